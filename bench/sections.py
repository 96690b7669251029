"""Sections of bench/RESULTS.md that other benchmarks than ``run.py`` write (watchers, soak):
each replaces its own section and keeps the others."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# Written by bench/watchers.py and bench/soak.py; run.py carries them over when it rewrites.
OWN = ("Watch streams", "Soak")
# Sections go before the notes on reading the tables, which end the file.
BEFORE = "## Reading the tables"


def _span(text: str, title: str) -> tuple[int, int] | None:
    found = re.search(rf"^## {re.escape(title)}\n", text, flags=re.M)
    if found is None:
        return None
    following = re.search(r"^## ", text[found.end() :], flags=re.M)
    end = found.end() + following.start() if following else len(text)
    return found.start(), end


def replaced(text: str, title: str, body: str) -> str:
    """``text`` with its section ``title`` holding ``body`` (added before the reading notes
    when it had none)."""
    section = f"## {title}\n\n{body.strip()}\n\n"
    span = _span(text, title)
    if span is not None:
        return text[: span[0]] + section + text[span[1] :]
    at = text.find(BEFORE)
    return text + "\n" + section if at < 0 else text[:at] + section + text[at:]


def record(title: str, body: str, path: Path = RESULTS) -> None:
    """Write section ``title`` of the results file."""
    path.write_text(replaced(path.read_text() if path.exists() else "", title, body))


def carried(old: str, new: str) -> str:
    """``new`` (run.py's report) with the sections of ``old`` that other benchmarks wrote."""
    for title in OWN:
        span = _span(old, title)
        if span is not None:
            new = replaced(new, title, old[span[0] : span[1]].split("\n", 2)[2])
    return new
