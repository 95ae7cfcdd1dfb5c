"""Fixtures: a REAL `mlflow server` (sqlite backend + proxied artifact store) on 127.0.0.1.

* ``mlflow_server`` / ``mlflow_app_server`` (session): one plain server, and one started with
  ``--app-name deepvid`` (the :mod:`deepvid_plugin.mlflow.app` entry point).
* ``mlflow_server_factory`` (function): start private servers, e.g. to :meth:`MLflowServer.kill`
  one in the middle of a test (fault tolerance); all of them are stopped at teardown.
* ``mlflow_tracking``: points the fluent API (``mlflow.start_run`` ...) at ``mlflow_server`` and
  puts the previous tracking URI back afterwards.

The server is MLflow's own ``.venv/bin/mlflow`` (default uvicorn server, one worker: the machine
is small and shared). Under ``CI=true`` a server that cannot start FAILS the test instead of
skipping it, so a broken environment can never pass as green.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_STARTUP_TIMEOUT_S = float(os.environ.get("DEEPVID_MLFLOW_STARTUP_TIMEOUT", "120"))


def _mlflow_executable() -> str | None:
    # The venv's own entry point first: it is the mlflow this package was installed against.
    candidate = Path(sys.executable).with_name("mlflow")
    return str(candidate) if candidate.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MLflowServer:
    """One running ``mlflow server`` subprocess (its own process group, so its uvicorn worker
    dies with it)."""

    url: str
    port: int
    root: Path
    backend_store_uri: str
    artifacts_destination: Path
    app_name: str | None
    process: subprocess.Popen
    log_path: Path
    _log_file: object = field(repr=False, default=None)
    _cmd: list = field(repr=False, default_factory=list)
    _env: dict = field(repr=False, default_factory=dict)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            return f"<no log: {e}>"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole server right now (simulates a crash / network loss mid-training)."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self, timeout_s: float = _STARTUP_TIMEOUT_S) -> None:
        """Start the server again on the same port, backend store and artifact root (after
        :meth:`kill` or :meth:`stop`): what a client sees when its server comes back."""
        if self.alive:
            raise RuntimeError("restart: the server is still running; kill() or stop() it first")
        self.stop()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(self._cmd, cwd=self.root, stdout=self._log_file,
                                        stderr=subprocess.STDOUT, env=self._env,
                                        start_new_session=True)
        _wait_healthy(self, timeout_s)

    def stop(self) -> None:
        """Graceful stop; escalates to SIGKILL after 10 s."""
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        # The uvicorn worker shares the group; make sure nothing of ours lingers.
        self._signal_group(signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _signal_group(self, sig: int) -> None:
        # Only ever the group this fixture created (start_new_session=True), by its id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def start_mlflow_server(root: Path, app_name: str | None = None,
                        timeout_s: float = _STARTUP_TIMEOUT_S) -> MLflowServer:
    """Start ``mlflow server`` with a sqlite backend under ``root`` and wait for ``/health``.

    Raises:
        RuntimeError: mlflow is not installed, or the server died / did not answer in time
            (the message carries the tail of its log).
    """
    exe = _mlflow_executable()
    if exe is None:
        raise RuntimeError(f"no mlflow executable next to {sys.executable}; "
                           "install the project with `make test`")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    cmd = [exe, "server", "--backend-store-uri", backend,
           # Artifacts go through the server (mlflow-artifacts:/ proxy), as on a team server, so
           # uploads and downloads really travel over HTTP.
           "--artifacts-destination", str(artifacts),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if app_name:
        cmd += ["--app-name", app_name]
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    # MLflow 3 also starts a job runner and seven huey consumers (GenAI jobs) per server; they
    # take no part in tracking or artifacts, and importing MLflow in all of them starves a
    # 2-core machine for seconds after /health answers (every request then runs ~8x slower).
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log_path = root / "server.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by MLflowServer.stop()
    proc = subprocess.Popen(cmd, cwd=root, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    server = MLflowServer(url=f"http://127.0.0.1:{port}", port=port, root=root,
                          backend_store_uri=backend, artifacts_destination=artifacts,
                          app_name=app_name, process=proc, log_path=log_path,
                          _log_file=log_file, _cmd=cmd, _env=env)
    _wait_healthy(server, timeout_s)
    return server


def _wait_healthy(server: MLflowServer, timeout_s: float) -> None:
    """Wait for ``/health``; stop the server and raise (with its log) if it never answers."""
    proc = server.process
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive:
            server.stop()
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"mlflow server did not answer /health within {timeout_s:.0f}s:\n"
                       f"{server.log_tail()}")


def _start_or_skip(root: Path, app_name: str | None = None) -> MLflowServer:
    try:
        return start_mlflow_server(root, app_name=app_name)
    except RuntimeError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"mlflow server is required under CI=true: {e}")
        pytest.skip(f"mlflow server unavailable: {e}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = _start_or_skip(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_app_server(tmp_path_factory):
    """A server started with ``--app-name deepvid``: MLflow's UI + API plus ``/deepvid/``."""
    server = _start_or_skip(tmp_path_factory.mktemp("mlflow-app-server"), app_name="deepvid")
    yield server
    server.stop()


@pytest.fixture
def mlflow_server_factory(tmp_path):
    """``start(app_name=None) -> MLflowServer``; every server started is stopped at teardown."""
    started: list[MLflowServer] = []

    def start(app_name: str | None = None) -> MLflowServer:
        server = _start_or_skip(tmp_path / f"mlflow-{len(started)}", app_name=app_name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mlflow_tracking(mlflow_server, monkeypatch):
    """Point the fluent API at ``mlflow_server`` for one test; restore the previous URI after."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        yield mlflow_server
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
