"""Random operation sequences on the DuckDB store and on the dict-backed model give the same answers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pg_cluster import Cluster

from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.models import ChatMessage, MessageFilters, SessionQuery
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning

KEYS = st.sampled_from(["a", "b", "c"])
ROLES = st.sampled_from(["user", "assistant"])
# A small alphabet so duplicates (for compact) and shared words (for search) are common.
CONTENTS = st.sampled_from(
    [
        "hello world",
        "hello",
        "Hello World!",
        "running late",
        "run",
        "Grüße aus Zürich",
        "café",
        "база данных",
        "東京都",
        "update_last",
        "",
        "😀",
    ]
)
WORDS = ["hello", "run", "cafe", "база", "東京", "update", "zurich", "world"]
OFFSETS = st.one_of(st.none(), st.integers(min_value=-8, max_value=8), st.integers())
LIMITS = st.one_of(st.none(), st.integers(min_value=1, max_value=8), st.integers(min_value=1))


class StoreMatchesModel(RuleBasedStateMachine):
    """Every rule runs on both backends; results must agree. Rare terms are scored in Python here."""

    tuning = Tuning()

    def __init__(self) -> None:
        super().__init__()
        self.model = MemorySessionBackend()
        self.store = self.open_store()
        # Sessions that exist in the store: the trait default delete_session cannot forget a key,
        # so the model's own list keeps deleted keys and this set says which are really there.
        self.existing: set[str] = set()
        self.steps = 0
        self.touched: str | None = None

    def open_store(self) -> DuckDBSessionBackend:
        return DuckDBSessionBackend(":memory:", tuning=self.tuning)

    @initialize()
    def start(self) -> None:
        self.existing = set()

    def teardown(self) -> None:
        self.store.close()

    @rule()
    def merge(self) -> None:
        # What upkeep does every merge_messages messages: recent postings move to the term-sorted table.
        self.store.merge()

    @rule(words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=3, unique=True))
    def search_sessions(self, words: list[str]) -> None:
        query = SessionQuery(keyword=" ".join(words), limit=10)
        assert {m.key for m in self.store.search(query)} == {m.key for m in self.model.search(query)}

    @rule(key=KEYS, role=ROLES, content=CONTENTS)
    def append(self, key: str, role: str, content: str) -> None:
        self.touched = key
        message = ChatMessage(role=role, content=content)
        self.model.append(key, message)
        self.store.append(key, message)
        self.existing.add(key)

    @rule(key=KEYS, role=ROLES, content=CONTENTS)
    def update_last(self, key: str, role: str, content: str) -> None:
        self.touched = key
        message = ChatMessage(role=role, content=content)
        assert self.store.update_last(key, message) == self.model.update_last(key, message)

    @rule(key=KEYS)
    def remove_last(self, key: str) -> None:
        self.touched = key
        assert self.store.remove_last(key) == self.model.remove_last(key)

    @rule(key=KEYS)
    def clear_messages(self, key: str) -> None:
        self.touched = key
        assert self.store.clear_messages(key) == self.model.clear_messages(key)

    @rule(key=KEYS)
    def compact(self, key: str) -> None:
        self.touched = key
        assert self.store.compact(key) == self.model.compact(key)

    @rule(key=KEYS)
    def delete_session(self, key: str) -> None:
        self.touched = key
        model_existed = self.model.delete_session(key)
        assert self.store.delete_session(key) == (key in self.existing)
        if key in self.existing:
            assert model_existed
        self.existing.discard(key)

    @precondition(lambda self: bool(self.existing))  # type: ignore[misc]
    @rule()
    def optimize(self) -> None:
        self.store.optimize()

    @rule(key=KEYS, offset=OFFSETS, limit=LIMITS)
    def load(self, key: str, offset: int | None, limit: int | None) -> None:
        expected = self.model.load_page(key, offset=offset, limit=limit)
        got = self.store.load_page(key, offset=offset, limit=limit)
        assert got.total == expected.total
        assert [(m.index, m.role, m.content) for m in got.messages] == [
            (m.index, m.role, m.content) for m in expected.messages
        ]
        assert self.store.load(key) == self.model.load(key)

    @rule(word=st.sampled_from(WORDS), key=st.one_of(st.none(), KEYS), role=st.one_of(st.none(), ROLES))
    def search_messages(self, word: str, key: str | None, role: str | None) -> None:
        expected = self.model.search_messages(word, limit=None, filters=MessageFilters(session_key=key, role=role))
        got = self.store.search_messages(word, limit=None, filters=MessageFilters(session_key=key, role=role))
        assert sorted((h.session_key, h.index, h.role) for h in got) == sorted(
            (h.session_key, h.index, h.role) for h in expected
        )

    @invariant()
    def messages_and_counts_agree(self) -> None:
        assert self.store.list_sessions() == [k for k in self.model.list_sessions() if k in self.existing]
        counts = {m.key: m.message_count for m in self.store.list_sessions_with_metadata()}
        assert set(counts) == self.existing
        for key in ["a", "b", "c"]:
            if key in self.existing:
                meta = self.store.get_session_metadata(key) if key == self.touched else None
                assert counts[key] == len(self.model.load(key))
                assert meta is None or meta.message_count == counts[key]
            else:
                assert self.store.get_session_metadata(key) is None
        if self.touched is not None:
            # Only the last rule's session can have changed: comparing it alone keeps steps cheap.
            assert self.store.load(self.touched) == self.model.load(self.touched)
            self.touched = None

    @invariant()
    def search_finds_exactly_the_messages_holding_the_word(self) -> None:
        # One word per step, in turn, keeps the check cheap enough for CI.
        word = WORDS[self.steps % len(WORDS)]
        self.steps += 1
        expected = {(h.session_key, h.index) for h in self.model.search_messages(word, limit=None)}
        got = {(h.session_key, h.index) for h in self.store.search_messages(word, limit=None)}
        assert got == expected, word


class SqlScoredStoreMatchesModel(StoreMatchesModel):
    """The same, with every search scored in one SQL aggregate (the path of frequent terms)."""

    tuning = Tuning(python_scoring_max=-1)


class FileReadStoreMatchesModel(StoreMatchesModel):
    """The same, with session rows read from the file (past session_view_max sessions) instead of memory."""

    tuning = Tuning(session_view_max=0)


class PostgresStoreMatchesModel(StoreMatchesModel):
    """The same on the PostgreSQL store, a fresh database per example."""

    def open_store(self) -> DuckDBSessionBackend:
        self.uri = CLUSTER[0].new_database()
        return PostgresSessionBackend(self.uri)  # type: ignore[return-value]  # the same methods

    def teardown(self) -> None:
        self.store.close()
        CLUSTER[0].recycle(self.uri)

    def merge(self) -> None:  # not a rule here: the PostgreSQL store has no postings to merge
        pass


# The cluster for PostgresStoreMatchesModel (hypothesis builds the machines, not pytest).
CLUSTER: list[Cluster] = []


@pytest.fixture(autouse=True)
def _cluster(request: pytest.FixtureRequest) -> None:
    if "Postgres" in request.node.nodeid and not CLUSTER:
        CLUSTER.append(request.getfixturevalue("pg_cluster"))


for machine in (StoreMatchesModel, SqlScoredStoreMatchesModel, FileReadStoreMatchesModel, PostgresStoreMatchesModel):
    machine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
TestStoreMatchesModel = StoreMatchesModel.TestCase
TestSqlScoredStoreMatchesModel = SqlScoredStoreMatchesModel.TestCase
TestFileReadStoreMatchesModel = FileReadStoreMatchesModel.TestCase
TestPostgresStoreMatchesModel = PostgresStoreMatchesModel.TestCase
