"""How the commands for people print: counts, times, sizes, aligned tables, a progress bar on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import TextIO


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"


def table(
    out: TextIO,
    headers: list[str],
    rows: list[list[str]],
    *,
    right: set[int] | frozenset[int] = frozenset(),
    widest: int | None = None,
    header: bool = True,
) -> None:
    """Aligned columns; cells with control characters or past the column's width are cut to fit the terminal."""
    if not rows:
        return
    cells = [[" ".join(cell.split()) if "\n" in cell or "\t" in cell else cell for cell in row] for row in rows]
    widths = [max(len(headers[i]) if header else 0, *(len(row[i]) for row in cells)) for i in range(len(headers))]
    room = max(shutil_columns() - 2 * (len(headers) - 1), 40)
    for i in sorted(range(len(widths)), key=lambda i: (i != widest, -widths[i])):
        excess = sum(widths) - room
        if excess <= 0:
            break
        widths[i] = max(widths[i] - excess, min(widths[i], 12))

    def line(values: list[str]) -> str:
        fitted = [v if len(v) <= w else v[: w - 1] + "…" for v, w in zip(values, widths, strict=True)]
        padded = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(fitted, widths, strict=True))]
        return "  ".join(padded).rstrip()

    if header:
        out.write(line(headers) + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def shutil_columns() -> int:
    """The terminal's width; 120 when output is not a terminal (so piped tables are not cut short)."""
    import shutil

    return shutil.get_terminalsize((120, 24)).columns if sys.stdout.isatty() else 120


def show_progress(options: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if options.progress is None else bool(options.progress)


class Progress:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""

    WIDTH = 30

    def __init__(self, label: str, total: int, unit: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self.drawn = time.monotonic()
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else 5.0

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and now - self.drawn >= self.interval:
            self.drawn = now
            self._draw(end="\r" if self.tty else "\n")

    def close(self) -> None:
        if self.enabled:
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate and fraction < 1 else 0.0
        amount = (
            f"{size(self.done)}/{size(self.total)}"
            if self.unit == "bytes"
            else f"{self.done:,}/{self.total:,} {self.unit}"
        )
        speed = f"{size(int(rate))}/s" if self.unit == "bytes" else f"{rate:,.0f}/s"
        text = f"{self.label} {fraction:4.0%} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {amount} {speed}"
        if fraction < 1:
            text += f" ETA {eta:,.0f} s"
        self.stream.write(text.ljust(79) + end if self.tty else text + end)
        self.stream.flush()
