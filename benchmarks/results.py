"""benchmarks/RESULTS.md: each script owns one "## ..." section and rewrites only that one."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(title: str, section: str, write: bool) -> None:
    """Print the section; unless told not to, put it into RESULTS.md too."""
    print(section)
    if write:
        write_section(title, section)


def write_section(title: str, section: str) -> None:
    """Replace the section headed `title` (e.g. "## Redeem"), keeping every other section."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(title)}\b.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")
