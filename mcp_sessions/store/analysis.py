"""Analysis: where a bulk import's chunks are analysed, a spawned process of its own, so that one CPU analyses
while the other reads sources and DuckDB inserts; here, when that process cannot run."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..terms import Analyzer
from .postings import Encoded, encode_texts, encode_texts_here

log = logging.getLogger(__name__)


class Analysis:
    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        # Messages of bulk imports sent to be analysed (see BulkImport).
        self.sent = 0
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def soon(self, contents: list[str], *, elsewhere: bool) -> Future[Encoded]:
        """The texts analysed and encoded for Writer.insert_encoded: done by now, or (elsewhere: a bulk import's)
        in the analysis process."""
        done: Future[Encoded] = Future()
        if not elsewhere or self._broken or self.analyzer is not Analyzer.shared():
            done.set_result(encode_texts(self.analyzer, contents))
            return done

        def broken(error: BaseException) -> None:
            # The process could not start (a __main__ that runs itself when imported, say) or died: the import
            # goes on analysing here.
            if not self._broken:
                log.warning("the analysis process failed, analysing in this one: %s", error)
            self._broken = True
            done.set_result(encode_texts(self.analyzer, contents))

        def arrived(result: Future[Encoded]) -> None:
            error = result.exception()
            if isinstance(error, BrokenProcessPool):
                broken(error)
            elif error is not None:
                done.set_exception(error)
            else:
                done.set_result(result.result())

        try:
            self._process().submit(encode_texts_here, contents).add_done_callback(arrived)
        except BrokenProcessPool as exc:  # broken by an earlier chunk whose callback has not run yet
            broken(exc)
        return done

    def _process(self) -> ProcessPoolExecutor:
        """Spawned, never forked from a process running DuckDB's threads. Its analyzer follows the same rules
        with the same stemmers (terms.Analyzer.shared)."""
        with self._lock:
            if self._pool is None:
                spawn = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_started)
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _started() -> None:
    """In the analysis process: its caches hold hundreds of thousands of objects, which the collector's default
    thresholds would scan again every few chunks (there are no cycles among them)."""
    gc.set_threshold(100_000, 50, 100)
