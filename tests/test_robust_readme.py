"""Every row of the README's "When things go wrong" table names tests, and each of them exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(title):
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    return text[start: text.index("\n## ", start + 1)]


def _tests_in(path):
    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_of_when_things_go_wrong_names_existing_tests():
    lines = _section("When things go wrong").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| what was tried"))
    rows = []
    for line in lines[start + 2:]:  # after the header and the |---| line, up to the table's end
        if not line.startswith("| "):
            break
        rows.append(line)
    assert len(rows) > 30
    for row in rows:
        named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row.rsplit(" | ", 1)[-1])
        assert named, f"no test named for: {row[:80]}"
        for file, test in named:
            assert test in _tests_in(ROOT / "tests" / file), f"{file}::{test} does not exist"
