"""The ``fastmlp`` command: subcommands, --version, --help defaults, the licence."""

import argparse
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import fastmlp
from fastmlp import cli, train

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_the_console_script(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"fastmlp {fastmlp.__version__}"
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("fastmlp") == "fastmlp.cli:main"


def test_python_m_fastmlp_runs_train(tiny_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--data-dir", str(tiny_dir), "--epochs", "1",
                           "--sizes", "784,16,10", "--out", str(out), "--no-plots", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.npz").exists() and "test accuracy" in proc.stdout


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_command_names_itself_in_its_usage_line(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith(f"usage: fastmlp {command} ")
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--no-such-flag"])
    assert exc.value.code == 2 and f"fastmlp {command}: error:" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit"])
    assert exc.value.code == 2 and "invalid choice: 'fit'" in capsys.readouterr().err


def help_entries(parser):
    """{option: its help text} from ``parser.format_help()``, wrapped lines joined."""
    entries, current = {}, None
    for line in parser.format_help().splitlines():
        m = re.match(r"^  (-\S+)", line)
        if m:
            current = m.group(1).rstrip(",")
            entries[current] = line
        elif line.startswith("   ") and current:
            entries[current] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\s+", " ", v) for k, v in entries.items()}


def assert_every_default_once(parser):
    """Each option's help states its default exactly once, and a literal default is the real one."""
    entries = help_entries(parser)
    for action in parser._actions:
        flag = action.option_strings[-1] if action.option_strings else None
        if flag is None or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        text = entries[flag]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # a switch
            assert "default" not in text, text
            continue
        assert text.count("(default:") == 1, text
        assert "(default: None)" not in text, text
        if action.default is not None:
            shown = action.default if not isinstance(action.default, (list, tuple)) else ",".join(map(str, action.default))
            assert f"(default: {shown})" in text, text


def test_train_help_shows_every_default_once():
    assert_every_default_once(train.build_parser())


def test_license_matches_pyproject():
    assert re.search(r'^license = "MIT"$', (ROOT / "pyproject.toml").read_text(), re.M)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_importing_an_uninstalled_source_folder_says_to_install(tmp_path):
    # fastmlp/ alone, as in a checkout that was never pip-installed: kernels/ is not fastmlp.kernels there
    shutil.copytree(Path(fastmlp.__file__).parent, tmp_path / "fastmlp", ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]; "
              "import fastmlp")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "fastmlp.kernels is missing" in proc.stderr and "pip install -e ." in proc.stderr
