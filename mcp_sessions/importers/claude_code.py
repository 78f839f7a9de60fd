"""Claude Code's transcripts: ~/.claude/projects/<project>/<sessionId>.jsonl, one event per line.

Anthropic calls the format internal: every field is checked, and a line that cannot be read is reported."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, parse_utc
from .feeds import Feed, Format, Reading, continued

# Title line types, weakest first, and the field each keeps its title in.
_TITLES = {"summary": "summary", "ai-title": "aiTitle", "custom-title": "customTitle"}


def default(home: Path) -> Path:
    return home / ".claude" / "projects"


def files(path: Path) -> list[Path]:
    """The transcripts of a file, a project folder, or the projects folder: oldest first, so a resumed
    session's repeats of earlier lines are the ones skipped."""
    if path.is_file():
        return [path]
    found = [p for p in path.glob("*.jsonl") if p.is_file()] + [p for p in path.glob("*/*.jsonl") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def looks_like(line: object) -> bool:
    if not isinstance(line, dict):
        return False
    return "sessionId" in line or line.get("type") in _TITLES or isinstance(line.get("message"), dict)


def detect(path: Path) -> bool:
    """Claude Code's lines carry a sessionId, a title, or a "message" object (ours: role and content)."""
    for file in files(path)[:3]:
        try:
            with file.open("rb") as lines:
                first = [json.loads(raw) for raw in itertools.islice((r for r in lines if r.strip()), 5)]
        except (OSError, ValueError):
            continue
        return any(looks_like(line) for line in first)
    return False


@dataclass
class _Session:
    session: ImportedSession
    messages: list[ImportedMessage] = field(default_factory=list[ImportedMessage])
    lines: list[str] = field(default_factory=list[str])  # where each message began
    titles: dict[str, str] = field(default_factory=dict[str, str])
    last_id: object = None  # message.id of the last assistant message, which later lines may continue


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    seen: set[str] = set()
    for file in files(reading.path):
        size = file.stat().st_size
        reading.files.append(file)
        yield list(_feeds(replace(reading, path=file), seen))
        reading.advance(size)


def _blocks(content: object) -> tuple[list[str], list[str], bool] | str:
    """(texts, tool results, only tool results) of a message's content, or why it cannot be read."""
    if isinstance(content, str):
        return [content], [], False
    if not isinstance(content, list):
        return f"message.content is neither text nor a list of blocks but {type(content).__name__}"
    texts: list[str] = []
    results: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            return f"a content block is not an object but {type(block).__name__}"
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            texts.append(f"[tool_use {block.get('name')}] {json.dumps(block.get('input'), ensure_ascii=False)}")
        elif kind == "tool_result":
            inner = _blocks(block.get("content", ""))
            results.append("\n\n".join(inner[0]) if isinstance(inner, tuple) else "")
        # thinking, redacted_thinking, image and blocks yet to come hold no text to keep
    only_results = bool(results) and len(results) == len(content)
    return texts, results, only_results


def _feeds(reading: Reading, seen: set[str]) -> Iterator[Feed]:
    sessions: dict[str, _Session] = {}
    titles: dict[str, str] = {}  # title lines without a sessionId belong to the file's sessions
    with reading.path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if raw.strip():
                _line(reading, str(number), raw, sessions, titles, seen)
    for state in sessions.values():
        named = {**titles, **state.titles}
        for kind in reversed(_TITLES):
            if kind in named:
                state.session.name = reading.text(kind, "name", named[kind])
                break
        messages = [
            message
            for where, m in zip(state.lines, state.messages, strict=True)
            if m.content and (message := reading.message(where, m.role, m.content, m.created_at)) is not None
        ]
        yield continued(reading, state.session, messages)


def _line(
    reading: Reading, where: str, raw: bytes, sessions: dict[str, _Session], titles: dict[str, str], seen: set[str]
) -> None:
    try:
        line = json.loads(raw)
    except UnicodeDecodeError:
        return reading.bad(where, "not UTF-8; line skipped")
    except ValueError as exc:
        return reading.bad(where, f"not JSON ({exc}); line skipped")
    if not isinstance(line, dict):
        return reading.bad(where, f"not a JSON object but {type(line).__name__}; line skipped")
    kind = line.get("type")
    raw_key = line.get("sessionId", reading.path.stem)
    if kind in _TITLES:
        title = line.get(_TITLES[kind])
        if isinstance(title, str) and title:
            target = sessions[raw_key].titles if raw_key in sessions and "sessionId" in line else titles
            target.pop(kind, None)
            target[kind] = title
        return None
    if kind not in ("user", "assistant") or line.get("isMeta"):
        return None  # system events, snapshots, progress, injected context: not messages
    uuid = line.get("uuid")
    if isinstance(uuid, str):
        if uuid in seen:
            return None  # a resumed session repeats the lines it resumes
        seen.add(uuid)
    message = line.get("message")
    if not isinstance(message, dict):
        return reading.bad(where, f'a "{kind}" line needs a "message" object; line skipped')
    try:
        at = parse_utc(line.get("timestamp"))  # type: ignore[arg-type]
    except ValueError as exc:
        return reading.bad(where, f"timestamp is not an ISO 8601 time ({exc}); line skipped")
    blocks = _blocks(message.get("content"))
    if isinstance(blocks, str):
        return reading.bad(where, f"{blocks}; line skipped")
    state = sessions.get(raw_key)
    if state is None:
        key = reading.key(where, raw_key)
        if key is None:
            return None
        state = sessions[raw_key] = _Session(ImportedSession(key))
    if state.session.room_id is None and line.get("cwd"):
        state.session.room_id = reading.text(where, "room_id", line["cwd"])
    texts, results, only_results = blocks
    message_id = message.get("id")
    if kind == "assistant" and message_id is not None and message_id == state.last_id and state.messages:
        if texts:  # the next line of the same assistant message
            last = state.messages[-1]
            joined = "\n\n".join([last.content, *texts]) if last.content else "\n\n".join(texts)
            state.messages[-1] = last._replace(content=joined)
        return None
    if kind == "user" and only_results:
        role, content = "tool", "\n\n".join(results)
    else:
        role, content = kind, "\n\n".join(texts)
    state.last_id = message_id if kind == "assistant" else None
    # An empty one (thinking only, an image alone) is dropped at the end unless a later line of the same
    # assistant message brings text.
    state.messages.append(ImportedMessage(role, content, at))
    state.lines.append(where)
    return None


FORMAT = Format("claude-code", default, detect, read, unit="line")
