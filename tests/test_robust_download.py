"""Downloads: a per-file deadline, one download at a time into a folder, stale temp files removed."""

import http.server
import os
import threading
import time

import pytest
from test_data import IDX_NAMES, isolated_env, mirrors, server  # noqa: F401  (fixtures)

from fastmlp import data
from fastmlp.data import DataError
from fastmlp.files import lock_folder


class Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes of gzip, then sends one byte every 50 ms."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            self.wfile.write(b"\x1f\x8b")
            for _ in range(998):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle_url(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_server_fails_at_the_per_file_deadline(tmp_path, trickle_url):
    # each byte comes well within the 5 s read timeout, so only a per-file deadline stops it
    with pytest.raises(DataError) as excinfo:
        data.download("mnist", tmp_path, mirrors=[trickle_url], timeout=5, deadline=0.5,
                      checksums={IDX_NAMES[0]: "0" * 64})
    assert "took longer than 0.5 s for one file" in str(excinfo.value)
    assert os.listdir(tmp_path) == []


def test_a_second_download_into_the_same_folder_waits_for_the_first(tmp_path, mirrors, capsys):  # noqa: F811
    urls, checksums = mirrors
    dest = tmp_path / "dest"
    dest.mkdir()
    held = lock_folder(dest)  # as a first download would
    errors = []

    def second():
        try:
            data.download("mnist", dest, mirrors=[urls["good"]], timeout=5, checksums=checksums)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        for _ in range(3000):
            if "waiting for another fastmlp download" in capsys.readouterr().err:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second download did not wait")
        assert os.listdir(dest) == []
    finally:
        os.close(held)
        thread.join(60)
    assert not errors and sorted(os.listdir(dest)) == sorted(IDX_NAMES)


def test_temp_files_of_killed_downloads_are_removed(tmp_path, mirrors):  # noqa: F811
    urls, checksums = mirrors
    dest = tmp_path / "dest"
    dest.mkdir()
    stale = [f"{IDX_NAMES[0]}.x1y2z3.part", f".{IDX_NAMES[1]}.0123456789abcdef.tmp"]
    for name in [*stale, "notes.txt"]:
        (dest / name).write_bytes(b"half a download")
    data.download("mnist", dest, mirrors=[urls["good"]], timeout=5, checksums=checksums)
    assert sorted(os.listdir(dest)) == sorted([*IDX_NAMES, "notes.txt"])


def test_temp_files_of_killed_downloads_are_removed_when_the_cache_is_read(tmp_path, monkeypatch):
    from test_data import write_tiny_idx

    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    write_tiny_idx(tmp_path / "cache" / "mnist")
    stale = [f"{IDX_NAMES[0]}.x1y2z3.part", f".{IDX_NAMES[2]}.0123456789abcdef.tmp"]
    for name in stale:
        (tmp_path / "cache" / "mnist" / name).write_bytes(b"half a download")
    assert data.load_mnist(download=False).x_train.shape == (50, 784)
    assert sorted(os.listdir(tmp_path / "cache" / "mnist")) == sorted(IDX_NAMES)
