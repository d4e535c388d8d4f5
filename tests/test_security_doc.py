"""docs/security.md cites code and tests: every cited test file and test function exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CITE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def cited() -> list[tuple[str, str | None]]:
    """(file, test name or None) for every test the document cites; a bare ``::name``
    belongs to the file cited before it in the same row."""
    found: list[tuple[str, str | None]] = []
    for row in (ROOT / "docs" / "security.md").read_text().splitlines():
        current: str | None = None
        for match in _CITE.finditer(row):
            path, name = match.group(1), match.group(2)
            if path is None and name is None:
                continue
            current = path or current
            if current is not None:
                found.append((current, name))
    return found


def test_every_cited_test_exists() -> None:
    """A renamed or deleted test shows up here, not in a reader's search."""
    missing = []
    for path, name in cited():
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name is not None and not re.search(rf"def {name}\(", source.read_text()):
            missing.append(f"{path}::{name}")
    assert cited()
    assert missing == []
