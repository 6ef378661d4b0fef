"""Console output cannot fail on what it prints (issue 23, family 6): a path that is not
valid UTF-8 is printed with its bad bytes as \\xNN, on any stream encoding."""

import io
import os

import pytest
from conftest import make_idx_dataset
from hypothesis import given, settings, strategies as st
from robust_helpers import TINY, assert_one_line_error, cli

from fastmlp.console import printable, write_line

# Any character, lone surrogates (what os.fsdecode makes of bytes that are not UTF-8) included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=any_text, encoding=st.sampled_from(["utf-8", "ascii", "latin-1", "cp1252", "utf-16", None]))
def test_printable_text_always_encodes_and_is_unchanged_when_it_could(text, encoding):
    out = printable(text, encoding)
    out.encode(encoding or "utf-8")  # strict: never raises
    try:
        text.encode(encoding or "utf-8")
    except UnicodeEncodeError:
        return
    assert out == text


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40))
def test_the_bytes_of_a_path_are_shown_as_a_backslash_escape(raw):
    """Whatever bytes a path holds: printed as UTF-8 where they are, \\xNN where not."""
    assert printable(os.fsdecode(raw), "utf-8") == raw.decode("utf-8", "backslashreplace")


@settings(max_examples=100, deadline=None)
@given(text=any_text, encoding=st.sampled_from(["utf-8", "ascii", "latin-1"]))
def test_write_line_never_fails_on_a_strict_stream(text, encoding):
    buf = io.BytesIO()
    stream = io.TextIOWrapper(buf, encoding=encoding, errors="strict")
    write_line(text, stream)
    assert buf.getvalue().endswith(b"\n")


BAD = os.fsdecode(b"data-\xff\xfe")


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "utf-8"}, {"PYTHONIOENCODING": "ascii"}])
def test_a_data_path_that_is_not_utf8_is_printed_not_a_crash(tmp_path, env):
    data = make_idx_dataset(tmp_path / BAD)
    code, out, err = cli("--data-dir", data, "--out", tmp_path / "run", *TINY, env=env)
    assert code == 0, err
    assert "data-\\xff\\xfe" in out and "wrote " in out


def test_an_error_naming_a_path_that_is_not_utf8_is_one_line(tmp_path):
    missing = tmp_path / BAD / "nothing-here"
    code, _, err = cli("--data-dir", missing, "--out", tmp_path / "run", *TINY, env={"PYTHONIOENCODING": "utf-8"})
    assert_one_line_error(code, err, "data-\\xff\\xfe")
