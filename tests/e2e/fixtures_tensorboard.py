"""Fixtures: a real ``tensorboard`` subprocess on 127.0.0.1.

Usage::

    def test_x(tensorboard_server, tmp_path):
        base_url = tensorboard_server(tmp_path / "logs", load_fast="false")
        urllib.request.urlopen(base_url + "/data/plugin/deepvid/runs")

``tensorboard_server(logdir, load_fast="false", extra_args=())`` starts
``.venv/bin/tensorboard --logdir LOGDIR --host 127.0.0.1 --port 0 --load_fast=...``, reads the
URL TensorBoard prints (``--port 0`` lets the OS pick a free port, so there is no race), waits
until it answers, and returns the base URL without a trailing slash. Every server is killed at
teardown. ``load_fast="true"`` runs RustBoard (the ``tensorboard-data-server`` binary).

``wait_for_json(url, predicate, timeout)`` polls a JSON route until ``predicate(body)`` holds:
TensorBoard loads the logdir in the background, so the first answers may still be empty.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

_URL_RE = re.compile(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/")
START_TIMEOUT = 90.0


def tensorboard_executable() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    found = here if os.path.exists(here) else shutil.which("tensorboard")
    if not found:
        # a missing server is a failure, not a skip (CI=true or not: it is a declared dependency)
        raise RuntimeError("the tensorboard executable is not installed next to "
                           f"{sys.executable}; run `make test` to create the venv")
    return found


def get_json(url: str, timeout: float = 30.0) -> tuple[int, object]:
    """``(status, parsed JSON body)`` of a GET, for any status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8")
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body


def wait_for_json(url: str, predicate, timeout: float = 60.0):
    """Poll ``url`` until it answers 200 with a body satisfying ``predicate``; return the body."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = get_json(url)
            last = (status, body)
            if status == 200 and predicate(body):
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not satisfy the condition within {timeout:.0f}s; last: "
                       f"{str(last)[:500]}")


class _Server:
    def __init__(self, logdir, load_fast: str, extra_args):
        if load_fast not in ("true", "false", "auto"):
            raise ValueError(f"load_fast: expected 'true', 'false' or 'auto', got {load_fast!r}")
        self.cmd = [tensorboard_executable(), "--logdir", os.fspath(logdir), "--host",
                    "127.0.0.1", "--port", "0", f"--load_fast={load_fast}", *extra_args]
        self.output: list[str] = []
        self.url: str | None = None
        self._found = threading.Event()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            m = _URL_RE.search(line)
            if m and self.url is None:
                self.url = m.group(1)
                self._found.set()
        self._found.set()  # exited: wake the waiter

    def wait_ready(self) -> str:
        self._found.wait(START_TIMEOUT)
        if self.url is None:
            raise RuntimeError(f"tensorboard did not start ({' '.join(self.cmd)}):\n"
                               + "".join(self.output[-40:]))
        wait_for_json(self.url + "/data/plugins_listing", lambda b: isinstance(b, dict),
                      timeout=START_TIMEOUT)
        return self.url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def tensorboard_server():
    """Factory: ``tensorboard_server(logdir, load_fast="false", extra_args=()) -> base_url``."""
    servers: list[_Server] = []

    def start(logdir, load_fast: str = "false", extra_args=()) -> str:
        server = _Server(logdir, load_fast, extra_args)
        servers.append(server)
        return server.wait_ready()

    yield start
    for s in servers:
        s.stop()
