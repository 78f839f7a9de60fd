"""A deterministic synthetic chat corpus: Zipf-distributed English-ish words with code, numbers and versions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from mcp_sessions.models import ChatMessage

# The words the harness searches for; no other vocabulary word shares their stems.
COMMON_WORD = "pipeline"  # in COMMON_SHARE of the messages
COMMON_SHARE = 0.25
RARE_WORD = "zymurgy"  # in RARE_COUNT messages
RARE_COUNT = 5
THREE_WORDS = "database timeout retry"  # Zipf ranks 100, 250 and 600: each in a few % of messages

SESSIONS_PER_1K = 9
BIG_SESSION_MESSAGES = 20_000
PAGE_SESSION_MESSAGES = 200
BIG_SESSION = "chat-big"
PAGE_SESSION = "chat-page"
VOCABULARY_SIZE = 4_000
ZIPF_EXPONENT = 1.0

_ENGLISH = """
the of and to a in is it you that he was for on are with as i his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do their
time if will way about many then them write would like so these her long make thing see him two has look more
day could go come did number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round man year came show
every good me give our under name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air well also play small end put
home read hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth father head
stand own page should country found answer school grow study still learn plant cover food sun four between
state keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late
run while press close night real life few north open seem together next white children begin got walk example
ease paper group always music those both mark often letter until mile river car feet care second book carry
took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood
""".split()
_ENGLISH = list(dict.fromkeys(_ENGLISH))
_TECH = """
server client request response error config build test deploy release branch commit merge review function
method class module package import export string integer float list dict array table column row schema
migration transaction lock thread process memory disk file folder path log debug warning trace stack queue
worker job task event message session token user account password key value hash cache index search result
score rank page limit offset cursor batch stream socket port host network latency throughput benchmark
profile optimize refactor parse format encode decode compress upload download install upgrade version
container image cluster node replica shard backup restore snapshot metric alert dashboard endpoint route
handler middleware plugin extension driver adapter wrapper library framework runtime compiler interpreter
variable constant pointer reference callback promise future async await loop iterator generator decorator
""".split()
_TECH = [w for w in dict.fromkeys(_TECH) if w not in _ENGLISH]
_SEARCH_WORDS = THREE_WORDS.split()
_RESERVED = (COMMON_WORD, RARE_WORD, *_SEARCH_WORDS)
_IDENTIFIERS = """
update_last SessionBackend TokenBucket load_page max_content_bytes HTTPServer parse_time asyncio.gather
os.path.join README.md pyproject.toml getUserById retry_after_ms XMLHttpRequest append_many search_messages
""".split()
_STATUS_CODES = ("200", "201", "204", "301", "400", "401", "403", "404", "409", "429", "500", "502", "503", "504")
_ONSETS = (
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "br",
    "cl",
    "dr",
    "fl",
    "gr",
    "pl",
    "pr",
    "sh",
    "sl",
    "st",
    "th",
    "tr",
    "ch",
    "qu",
    "sp",
    "",
)
_VOWELS = ("a", "e", "i", "o", "u", "ea", "ai", "ou", "io", "ee")
_CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "rt", "ck", "x")


def _vocabulary(rng: random.Random) -> list[str]:
    """Words by Zipf rank: English function words, then technical and made-up words, the search words at fixed ranks."""
    taken = set(_ENGLISH) | set(_TECH) | set(_RESERVED)
    made_up: list[str] = []
    while len(made_up) < VOCABULARY_SIZE:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.randint(2, 3)))
        if len(word) < 4 or word in taken or any(word.startswith(r[:5]) or r.startswith(word) for r in _RESERVED):
            continue
        taken.add(word)
        made_up.append(word)
    rest = _TECH + made_up
    rng.shuffle(rest)
    words = _ENGLISH + rest[: VOCABULARY_SIZE - len(_ENGLISH) - len(_SEARCH_WORDS)]
    for rank, word in zip((100, 250, 600), _SEARCH_WORDS, strict=True):
        words.insert(rank - 1, word)
    return words


class Corpus:
    """size messages in about 9 sessions per 1k, plus one big session and one of exactly 200 messages.

    rows() generates the messages lazily and always the same ones for the same (size, seed).
    """

    def __init__(self, size: int, seed: int = 20261125) -> None:
        if size < 1_000:
            raise ValueError(f"size must be at least 1000, got {size}")
        self.size = size
        self.seed = seed
        plan = random.Random(seed)
        self.vocabulary = _vocabulary(random.Random(seed + 1))
        ranks = range(1, len(self.vocabulary) + 1)
        self._cum_weights = list(itertools.accumulate(1 / rank**ZIPF_EXPONENT for rank in ranks))
        self.big_session_messages = min(BIG_SESSION_MESSAGES, size // 5)
        rest = size - self.big_session_messages - PAGE_SESSION_MESSAGES
        count = max(1, round(size * SESSIONS_PER_1K / 1_000) - 1)
        weights = [plan.expovariate(1.0) + 0.05 for _ in range(count)]
        total_weight = sum(weights)
        sizes = [max(1, int(w / total_weight * rest)) for w in weights]
        for i in range(rest - sum(sizes)):
            sizes[i % count] += 1
        while sum(sizes) > rest:  # only when many sessions were rounded up to one message
            sizes[sizes.index(max(sizes))] -= 1
        regular = [(f"chat-{i:05d}", n) for i, n in enumerate(sizes)]
        # The big session is imported in the middle, the 200-message one early: neither is at an edge.
        sessions = list(regular)
        sessions.insert(len(sessions) // 2, (BIG_SESSION, self.big_session_messages))
        sessions.insert(len(sessions) // 5, (PAGE_SESSION, PAGE_SESSION_MESSAGES))
        self.sessions: list[tuple[str, int]] = sessions
        self.regular_sessions: list[str] = [key for key, _ in regular]
        self.rare_positions: frozenset[int] = frozenset(plan.sample(range(size), RARE_COUNT))

    def message(self, rng: random.Random, role: str, *, rare: bool = False) -> ChatMessage:
        """One message of 5-120 words; assistants write longer ones."""
        u = rng.random()
        length = 5 + int(35 * u**1.5) if role == "user" else 10 + int(110 * u**1.5)
        words = rng.choices(self.vocabulary, cum_weights=self._cum_weights, k=length)
        for _ in range(2):
            if rng.random() < 0.3:
                kind = rng.random()
                if kind < 0.5:
                    special = rng.choice(_IDENTIFIERS)
                elif kind < 0.7:
                    special = rng.choice(_STATUS_CODES)
                elif kind < 0.85:
                    special = str(rng.randrange(10_000))
                else:
                    special = f"{rng.randrange(4)}.{rng.randrange(20)}.{rng.randrange(30)}"
                words[rng.randrange(length)] = special
        if rng.random() < COMMON_SHARE:
            words[rng.randrange(length)] = COMMON_WORD
        if rare:
            words[rng.randrange(length)] = RARE_WORD
        # Sentences of 6-17 words: a capital first letter, a full stop, now and then a comma.
        pieces: list[str] = []
        start = 0
        while start < length:
            end = min(length, start + rng.randint(6, 17))
            sentence = words[start:end]
            sentence[0] = sentence[0][:1].upper() + sentence[0][1:]
            if end - start > 8:
                sentence[4] += ","
            pieces.append(" ".join(sentence) + ".")
            start = end
        return ChatMessage(role=role, content=" ".join(pieces))

    def rows(self) -> Iterator[tuple[str, ChatMessage]]:
        """Every (session_key, message), session after session, each session's messages in order."""
        rng = random.Random(self.seed + 2)
        position = 0
        for key, count in self.sessions:
            for i in range(count):
                role = "user" if i % 2 == 0 else "assistant"
                yield key, self.message(rng, role, rare=position in self.rare_positions)
                position += 1


def _main() -> None:
    import sys
    import time

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    corpus = Corpus(size)
    started = time.perf_counter()
    words = chars = common = rare = 0
    for _, message in corpus.rows():
        text = message.content.lower()
        words += text.count(" ") + 1
        chars += len(text)
        common += COMMON_WORD in text
        rare += RARE_WORD in text
    elapsed = time.perf_counter() - started
    print(
        f"{size} messages in {len(corpus.sessions)} sessions, {elapsed:.1f} s ({size / elapsed:,.0f}/s);"
        f" {words / size:.1f} words and {chars / size:.0f} chars per message;"
        f" {COMMON_WORD!r} in {common / size:.1%}, {RARE_WORD!r} in {rare}"
    )


if __name__ == "__main__":
    _main()
