"""The README is a short front page and the documentation keeps its promises.

- The README stays a front page: at most 150 lines, the two set-up commands
  (CI runs the second), links that resolve, and its results table equal to the
  committed results files it names.
- Neither the README nor the pages in docs/ name a development machine's paths,
  a remote-execution set-up, internal targets or the history of the code.
- Every row of the "When things go wrong" table (docs/guide/troubleshooting.md)
  names tests, and each of them exists.

The site itself is built with ``mkdocs build --strict`` in .ci/run, which fails
on broken links, anchors and API references.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TROUBLESHOOTING = DOCS / "guide" / "troubleshooting.md"
RESULTS = ROOT / "benchmarks" / "results"

SET_UP_COMMANDS = (
    "pip install -e . && python -m fastmlp.train",
    'pip install -e ".[dev]" && pytest -n auto',
)

# What neither the README nor the documentation may contain, with why.
FORBIDDEN = {
    "a development machine's path": [r"\.\./shared", r"/work/", r"shared/data", r"\.gpu-data"],
    "a remote-execution set-up": [r"\$OUT\b", r"\bcarry\b", r"timeout_s", r"\bdevice tool\b", r"\bdevice call\b",
                                  r"\bdevice machine\b"],
    "an internal target": [r"\d\s*[×x]\s+target", r"\btarget is (?:at most|\d)", r"\bmiss(?:es|ed)? (?:the|it|its)\b",
                           r"(?:preset|recipe)'s target", r"\bnot reached\b"],
    "the history of the code": [r"\bused to\b", r"no GPU was available", r"\ban older fastmlp\b",
                                r"\bbefore these flags existed\b", r"\bof the time\b", r"\bearlier revision\b",
                                r"\bwhen it was written\b", r"\bold code\b", r"\btoday's\b",
                                r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"],
}


def _doc_pages():
    return sorted(DOCS.rglob("*.md"))


def _tests_in(path):
    return {node.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _links(text):
    """The targets of the Markdown links and images in ``text``, outside code spans and blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


def test_the_readme_is_a_front_page_of_at_most_150_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the details into docs/"


def test_the_readme_keeps_the_two_set_up_commands():
    text = README.read_text()
    for command in SET_UP_COMMANDS:
        assert f"\n{command}\n" in text, f"README.md lost the set-up command: {command}"
    # CI runs the README's test command
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[dev' in ci and "\npytest -n auto\n" in ci
    assert "mkdocs build --strict" in ci


@pytest.mark.parametrize("page", [README, *_doc_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_dev_paths_remote_set_up_internal_targets_or_history(page):
    text = re.sub(r"\s+", " ", page.read_text())  # a phrase may break across lines
    for what, patterns in FORBIDDEN.items():
        for pattern in patterns:
            hit = re.search(pattern, text)
            assert hit is None, (f"{page.relative_to(ROOT)} names {what}: "
                                 f"{text[max(0, hit.start() - 60): hit.end() + 60]!r}")


def test_the_forbidden_patterns_catch_what_they_are_for():
    """The check above can fail: each kind of text it exists for is caught."""
    samples = {
        "a development machine's path": "FASTMLP_DATA_DIR=../shared/data pytest",
        "a remote-execution set-up": "call run with carry: [\".gpu-data\"] and --bundle $OUT/x.tar.gz",
        "an internal target": "it took 0.42x the time of PyTorch's (the target is at most 0.50x)",
        "the history of the code": "measured with the old code (ba7b06f) before the uint8 gather",
    }
    for what, sample in samples.items():
        assert any(re.search(p, sample) for p in FORBIDDEN[what]), what


def test_the_readme_links_resolve():
    text = README.read_text()
    links = _links(text)
    assert any(link.startswith("docs/") for link in links), "README.md links into no documentation page"
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        if link.startswith("#"):
            assert link[1:] in anchors, f"README.md links to a missing heading: {link}"
            continue
        target = ROOT / link.split("#", 1)[0]
        assert target.exists(), f"README.md links to a missing file: {link}"


def _recipe_rows():
    """(preset, dataset, lowest, mean, seconds) of each row of the README's results table."""
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\w-]+) \| ([\d.]+) % / ([\d.]+) % \| ([\d.]+) s \|$",
                      README.read_text(), flags=re.M)
    assert len(rows) >= 3, "README.md lost its results table"
    return rows


# Where each preset's rows come from: the results file, and the recipe's changes to the file's preset
# (the `classic` rows are the recipes-default run's second recipe).
_SOURCE = {
    "default": ("recipes-default-cpu-2core.json", ""),
    "classic": ("recipes-default-cpu-2core.json", "hidden=128,64 lr=0.05 epochs=30 warmup=0 dropout=0"),
    "fast": ("recipes-fast-cpu-2core.json", ""),
}


def test_the_readme_results_table_is_the_committed_results():
    text = README.read_text()
    for preset, dataset, lowest, mean, seconds in _recipe_rows():
        file, changes = _SOURCE[preset]
        assert file in text, f"README.md does not name {file}, the source of its {preset} rows"
        recipe = next(r for r in json.loads((RESULTS / file).read_text())["recipes"] if r["changes"] == changes)
        result = recipe["results"][{"MNIST": "mnist", "Fashion-MNIST": "fashion-mnist"}[dataset]]
        assert f"{100 * result['min_test_accuracy']:.2f}" == lowest, (preset, dataset)
        assert f"{100 * result['mean_test_accuracy']:.2f}" == mean, (preset, dataset)
        decimals = len(seconds.split(".")[1]) if "." in seconds else 0
        assert f"{result['mean_train_seconds']:.{decimals}f}" == seconds, (preset, dataset)


def test_every_row_of_when_things_go_wrong_names_existing_tests():
    lines = TROUBLESHOOTING.read_text().splitlines()
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
