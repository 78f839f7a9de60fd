"""search_messages, second revision, through the real program over stdio: neighbours, exclusions, channel, budget,
cursors and matched words, each rule of CONTRACT.md's "Recall that fits the context window"."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from tool_calls import call, message, refused

pytestmark = pytest.mark.anyio

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import
LONG = "filler " * 300 + "the zeppelin hangar is ready " + "padding " * 300


def server(db: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db])


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("recall") / "sessions.duckdb")


async def _seed(client: Client) -> None:
    decisions = [
        "morning, shall we look at the database",
        "the replica lag is back",
        "what about the postgres upgrade",
        "we decided the postgres upgrade goes to 16.2 next week",
        "ok, I will write the runbook",
        "and the rollback plan",
        "done for today",
    ]
    for i, text in enumerate(decisions):
        role = ("user", "assistant")[i % 2]
        await call(client, "append", {"session_key": "decisions", "message": message(text, role)})
    await call(client, "set_session_context", {"session_key": "decisions", "context": {"channel_id": "ops"}})
    await call(client, "append", {"session_key": "current", "message": message("remind me about the postgres upgrade")})
    await call(client, "set_session_context", {"session_key": "current", "context": {"channel_id": "ops"}})
    for i in range(25):
        await call(client, "append", {"session_key": "many", "message": message(f"postgres note number {i}")})
    await call(client, "set_session_context", {"session_key": "many", "context": {"channel_id": "chat"}})
    for text in ("before the long one " + "x" * 900, LONG, "after the long one " + "y" * 900):
        await call(client, "append", {"session_key": "long", "message": message(text)})


@pytest.fixture(scope="module")
async def client(module_db: str) -> AsyncIterator[Client]:
    async with Client(server(module_db), read_timeout_seconds=START) as connected:
        await _seed(connected)
        yield connected


async def search(client: Client, **arguments: Any) -> dict[str, Any]:
    return await call(client, "search_messages", arguments)


def _text_chars(result: dict[str, Any]) -> int:
    return sum(
        len(h["snippet"]) + sum(len(m["content"]) for m in h["context_before"] + h["context_after"])
        for h in result["hits"]
    )


async def test_without_the_new_arguments_hits_come_as_before_with_empty_context(client: Client) -> None:
    result = await search(client, query="zeppelin")
    assert result["next_cursor"] is None and result["truncated"] is False
    (hit,) = result["hits"]
    assert (hit["session_key"], hit["index"]) == ("long", 1)
    assert "zeppelin" in hit["snippet"] and len(hit["snippet"]) <= 300
    assert hit["context_before"] == [] and hit["context_after"] == []
    assert hit["matched_terms"] == ["zeppelin"]


async def test_context_brings_the_messages_around_each_hit_oldest_first_with_their_index(client: Client) -> None:
    result = await search(client, query="decided 16.2", context=2)
    hit = result["hits"][0]
    assert (hit["session_key"], hit["index"]) == ("decisions", 3)
    before, after = hit["context_before"], hit["context_after"]
    assert [m["index"] for m in before] == [1, 2] and [m["index"] for m in after] == [4, 5]
    assert [m["content"] for m in before] == ["the replica lag is back", "what about the postgres upgrade"]
    assert [m["role"] for m in before + after] == ["assistant", "user", "user", "assistant"]
    for m in before + after:
        assert m["created_at"] is not None and "score" not in m and m["truncated"] is False


async def test_context_stops_at_the_ends_of_the_session(client: Client) -> None:
    result = await search(client, query="morning", context=20)
    (hit,) = result["hits"]
    assert hit["index"] == 0 and hit["context_before"] == []
    assert [m["index"] for m in hit["context_after"]] == [1, 2, 3, 4, 5, 6]


async def test_context_messages_are_never_hits_themselves(client: Client) -> None:
    # Both indexes 2 and 3 of "decisions" match: each is a hit and may sit in the other's context.
    result = await search(client, query="postgres upgrade", session_key="decisions", context=1)
    hits = {h["index"]: h for h in result["hits"]}
    assert set(hits) == {2, 3}
    assert [m["index"] for m in hits[3]["context_before"]] == [2]
    assert all("score" not in m for h in hits.values() for m in h["context_before"] + h["context_after"])


async def test_exclude_session_keys_leaves_those_sessions_out(client: Client) -> None:
    everything = await search(client, query="postgres upgrade", limit=200)
    assert "current" in {h["session_key"] for h in everything["hits"]}
    result = await search(client, query="postgres upgrade", limit=200, exclude_session_keys=["current", "many"])
    assert {h["session_key"] for h in result["hits"]} == {"decisions"}
    assert await search(client, query="postgres", exclude_session_keys=[]) == await search(client, query="postgres")


async def test_channel_id_keeps_only_sessions_of_that_channel(client: Client) -> None:
    ops = await search(client, query="postgres", limit=200, channel_id="ops")
    assert {h["session_key"] for h in ops["hits"]} == {"decisions", "current"}
    chat = await search(client, query="postgres", limit=200, channel_id="chat")
    assert {h["session_key"] for h in chat["hits"]} == {"many"}
    assert (await search(client, query="postgres", channel_id="nowhere"))["hits"] == []


async def test_matched_terms_are_the_query_words_as_written_in_query_order(client: Client) -> None:
    result = await search(client, query="Upgrade zebra POSTGRES decided", session_key="decisions")
    by_index = {h["index"]: h["matched_terms"] for h in result["hits"]}
    assert by_index[3] == ["Upgrade", "POSTGRES", "decided"]
    assert by_index[2] == ["Upgrade", "POSTGRES"]


async def test_paging_with_a_cursor_yields_the_hits_of_one_larger_call_in_order(client: Client) -> None:
    whole = await search(client, query="postgres note upgrade", limit=200)
    assert len(whole["hits"]) > 20 and whole["next_cursor"] is None
    paged: list[dict[str, Any]] = []
    result = await search(client, query="postgres note upgrade", limit=4)
    while True:
        paged.extend(result["hits"])
        if result["next_cursor"] is None:
            break
        assert len(result["hits"]) == 4
        result = await search(client, query="postgres note upgrade", limit=4, cursor=result["next_cursor"])
    assert paged == whole["hits"]


async def test_the_last_page_has_no_cursor_and_an_exact_fit_has_none_either(client: Client) -> None:
    everything = await search(client, query="postgres", limit=200)
    total = len(everything["hits"])
    exact = await search(client, query="postgres", limit=total)
    assert exact["next_cursor"] is None and exact["hits"] == everything["hits"]
    short = await search(client, query="postgres", limit=total - 1)
    assert short["next_cursor"] is not None
    rest = await search(client, query="postgres", limit=5, cursor=short["next_cursor"])
    assert rest["hits"] == everything["hits"][total - 1 :] and rest["next_cursor"] is None


async def test_paging_keeps_working_with_context_and_filters(client: Client) -> None:
    filters: dict[str, Any] = {"exclude_session_keys": ["current"], "channel_id": "ops", "context": 1}
    whole = await search(client, query="postgres upgrade runbook", limit=200, **filters)
    first = await search(client, query="postgres upgrade runbook", limit=1, **filters)
    second = await search(client, query="postgres upgrade runbook", limit=1, cursor=first["next_cursor"], **filters)
    assert first["hits"] + second["hits"] == whole["hits"][:2]


async def test_max_chars_keeps_the_text_within_budget_best_hits_first(client: Client) -> None:
    unbounded = await search(client, query="postgres", limit=30, context=3)
    assert _text_chars(unbounded) > 1000
    result = await search(client, query="postgres", limit=30, context=3, max_chars=1000)
    assert _text_chars(result) <= 1000
    assert result["truncated"] is True and result["next_cursor"] is not None
    assert [(h["session_key"], h["index"]) for h in result["hits"]] == [
        (h["session_key"], h["index"]) for h in unbounded["hits"][: len(result["hits"])]
    ]


async def test_a_context_message_that_does_not_fit_whole_is_cut_and_marked(client: Client) -> None:
    result = await search(client, query="zeppelin", context=1, max_chars=600)
    (hit,) = result["hits"]
    assert result["truncated"] is True and _text_chars(result) <= 600
    context = hit["context_before"] + hit["context_after"]
    cut = [m for m in context if m["truncated"]]
    assert len(cut) == 1 and len(cut[0]["content"]) < 900
    originals = {0: "before the long one " + "x" * 900, 2: "after the long one " + "y" * 900}
    assert originals[cut[0]["index"]].startswith(cut[0]["content"])


async def test_at_least_one_hit_comes_back_however_small_the_budget(client: Client) -> None:
    result = await search(client, query="zeppelin hangar", context=5, max_chars=200)
    (hit,) = result["hits"]
    assert "zeppelin" in hit["snippet"] and len(hit["snippet"]) <= 200
    assert result["truncated"] is True
    assert _text_chars(result) <= 200


async def test_a_budget_that_holds_everything_truncates_nothing(client: Client) -> None:
    result = await search(client, query="decided", context=1, max_chars=1_000_000)
    assert result["truncated"] is False and result["next_cursor"] is None
    assert all(not m["truncated"] for h in result["hits"] for m in h["context_before"] + h["context_after"])


async def test_paging_after_a_budget_cut_continues_where_the_page_stopped(client: Client) -> None:
    whole = await search(client, query="postgres", limit=200, context=2)
    seen: list[tuple[str, int]] = []
    result = await search(client, query="postgres", limit=10, context=2, max_chars=400)
    for _ in range(200):
        seen.extend((h["session_key"], h["index"]) for h in result["hits"])
        if result["next_cursor"] is None:
            break
        cursor = result["next_cursor"]
        result = await search(client, query="postgres", limit=10, context=2, max_chars=400, cursor=cursor)
    assert seen == [(h["session_key"], h["index"]) for h in whole["hits"]]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"context": -1}, ["context", "at least 0"]),
        ({"context": 21}, ["context", "at most 20"]),
        ({"context": "two"}, ["context"]),
        ({"max_chars": 199}, ["max_chars", "at least 200"]),
        ({"max_chars": 1_000_001}, ["max_chars", "at most 1000000"]),
        ({"exclude_session_keys": [f"k{i}" for i in range(101)]}, ["exclude_session_keys", "at most 100"]),
        ({"exclude_session_keys": ["ok", " "]}, ["exclude_session_keys", "empty or whitespace"]),
        ({"exclude_session_keys": ["a\x00b"]}, ["exclude_session_keys", "control characters"]),
        ({"exclude_session_keys": ["k" * 513]}, ["exclude_session_keys", "at most 512"]),
        ({"exclude_session_keys": "current"}, ["exclude_session_keys"]),
        ({"channel_id": "ops\n"}, ["channel_id", "control characters"]),
        ({"channel_id": "c" * 513}, ["channel_id", "at most 512"]),
        ({"cursor": "not a cursor"}, ["cursor", "malformed"]),
        ({"cursor": ""}, ["cursor", "malformed"]),
        ({"cursor": "eyJ2IjoxfQ"}, ["cursor", "malformed"]),
        ({"context_window": 2}, ["context_window"]),
    ],
)
async def test_bad_recall_arguments_are_tool_errors_naming_the_argument(
    client: Client, arguments: dict[str, Any], words: list[str]
) -> None:
    before = await call(client, "list_sessions_with_metadata")
    text = await refused(client, "search_messages", {"query": "postgres", **arguments})
    for word in words:
        assert word in text, text
    assert await call(client, "list_sessions_with_metadata") == before


@pytest.mark.parametrize(
    "other",
    [
        {"query": "postgres upgrade"},
        {"query": "postgres", "session_key": "many"},
        {"query": "postgres", "exclude_session_keys": ["many"]},
        {"query": "postgres", "channel_id": "ops"},
        {"query": "postgres", "role": "user"},
        {"query": "postgres", "since": "2000-01-01"},
    ],
)
async def test_a_cursor_made_for_other_arguments_is_refused(client: Client, other: dict[str, Any]) -> None:
    first = await search(client, query="postgres", limit=2)
    assert first["next_cursor"] is not None
    text = await refused(client, "search_messages", {**other, "cursor": first["next_cursor"]})
    assert "cursor" in text and "other arguments" in text


async def test_a_cursor_tampered_with_is_refused(client: Client) -> None:
    import base64

    first = await search(client, query="postgres", limit=2)
    body = json.loads(base64.urlsafe_b64decode(first["next_cursor"] + "=="))
    body["o"] = -5
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    assert "cursor" in await refused(client, "search_messages", {"query": "postgres", "cursor": forged})


async def test_the_input_schema_lists_the_new_arguments_and_forbids_others(client: Client) -> None:
    (tool,) = [t for t in (await client.list_tools()).tools if t.name == "search_messages"]
    properties = tool.input_schema["properties"]
    assert {"context", "exclude_session_keys", "channel_id", "max_chars", "cursor"} <= set(properties)
    assert tool.input_schema["additionalProperties"] is False
    output = tool.output_schema
    assert output is not None and {"hits", "next_cursor", "truncated"} <= set(output["properties"])


async def test_a_second_server_on_the_held_file_relays_the_new_arguments(client: Client, module_db: str) -> None:
    arguments: dict[str, Any] = {
        "query": "postgres upgrade",
        "limit": 2,
        "context": 2,
        "exclude_session_keys": ["current"],
        "channel_id": "ops",
        "max_chars": 5000,
    }
    held = await search(client, **arguments)
    async with Client(server(module_db), read_timeout_seconds=START) as second:
        relayed = await search(second, **arguments)
        assert relayed == held
        assert held["next_cursor"] is None or await search(second, **arguments, cursor=held["next_cursor"]) == (
            await search(client, **arguments, cursor=held["next_cursor"])
        )
        assert "cursor" in await refused(second, "search_messages", {"query": "postgres", "cursor": "zzz"})


# Found by outside clients (issue 12).


async def test_an_upper_case_accented_word_finds_its_plain_lower_case_form(client: Client) -> None:
    await call(client, "append", {"session_key": "cv", "message": message("I sent my resume to the lab")})
    await call(client, "append", {"session_key": "cv2", "message": message("Le RÉSUMÉ est prêt")})
    for query in ("RÉSUMÉ", "résumé", "resume", "Résumé"):
        found = {h["session_key"] for h in (await search(client, query=query))["hits"]}
        assert found == {"cv", "cv2"}, query


async def test_a_search_keyword_of_control_characters_lists_sessions_by_recent_activity(client: Client) -> None:
    recent = await call(client, "search", {"query": {"keyword": "", "limit": 5}})
    assert recent["sessions"]
    for keyword in ("\x01", "\x00\x1f\x7f", " \t\x85 \x9f"):
        assert await call(client, "search", {"query": {"keyword": keyword, "limit": 5}}) == recent, repr(keyword)


async def test_an_agent_scoped_server_pages_and_excludes_within_its_own_sessions(tmp_path: Any) -> None:
    db = str(tmp_path / "scoped.duckdb")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_sessions", "--db", db, "--agent-alias", "ada"]
    )
    async with Client(params, read_timeout_seconds=START) as ada:
        for key in ("a1", "a2", "a3"):
            for i in range(3):
                await call(ada, "append", {"session_key": key, "message": message(f"kiwi {key} {i}")})
        whole = await search(ada, query="kiwi", limit=200, context=1, exclude_session_keys=["a2"])
        assert {h["session_key"] for h in whole["hits"]} == {"a1", "a3"}
        first = await search(ada, query="kiwi", limit=2, context=1, exclude_session_keys=["a2"])
        rest = await search(
            ada, query="kiwi", limit=200, context=1, exclude_session_keys=["a2"], cursor=first["next_cursor"]
        )
        assert first["hits"] + rest["hits"] == whole["hits"] and rest["next_cursor"] is None
        assert (await search(ada, query="kiwi", agent_alias="bob"))["hits"] == []


async def test_the_memory_backend_answers_the_same_arguments() -> None:
    from mcp_sessions.memory import MemorySessionBackend
    from mcp_sessions.server import build_server

    async with Client(build_server(MemorySessionBackend())) as memory:
        for i in range(6):
            await call(memory, "append", {"session_key": "m", "message": message(f"plum {i}" if i % 2 else "x")})
        await call(memory, "append", {"session_key": "other", "message": message("plum elsewhere")})
        whole = await search(memory, query="plum", limit=200, context=1, exclude_session_keys=["other"])
        assert [h["index"] for h in whole["hits"]] == [5, 3, 1]
        assert [[m["index"] for m in h["context_before"] + h["context_after"]] for h in whole["hits"]] == [
            [4],
            [2, 4],
            [0, 2],
        ]
        first = await search(memory, query="plum", limit=1, context=1, exclude_session_keys=["other"])
        rest = await search(
            memory, query="plum", limit=5, context=1, exclude_session_keys=["other"], cursor=first["next_cursor"]
        )
        assert first["hits"] + rest["hits"] == whole["hits"]
        assert first["hits"][0]["matched_terms"] == ["plum"]


async def test_a_cursor_holds_whatever_the_order_of_the_excluded_keys(client: Client) -> None:
    first = await search(client, query="postgres", limit=2, exclude_session_keys=["long", "current"])
    again = await search(
        client,
        query="postgres",
        limit=2,
        exclude_session_keys=["current", "long", "current"],
        cursor=first["next_cursor"],
    )
    whole = await search(client, query="postgres", limit=4, exclude_session_keys=["current", "long"])
    assert first["hits"] + again["hits"] == whole["hits"]
