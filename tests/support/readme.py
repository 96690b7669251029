"""The README read as the tests check it: its sections and their code blocks."""

from __future__ import annotations

import re
from pathlib import Path


def section(repo: Path, title: str) -> str:
    """The text of the README section ``## title``."""
    text = (repo / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text``."""
    return re.findall(r"```(?:\w+)?\n(.*?)```", text, flags=re.S)
