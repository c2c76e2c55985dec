"""Start a throwaway redis-server on a free loopback port for tests.

    with running_redis_server() as url:
        ...  # "redis://127.0.0.1:<port>/0"

    server = RedisServer(workdir, password="s3cret")  # not running yet: its URL refuses connections
    server.start(); server.stop(); server.start()  # the same port each time

Callers skip their tests when ``find_redis_server()`` is None (CI installs redis-server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

NOT_INSTALLED = "redis-server is not installed (apt-get install redis-server)"
START_TIMEOUT = 10.0
START_ATTEMPTS = 3  # another process may take the free port between our probe and redis binding it


def find_redis_server() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_redis_server() -> Iterator[str]:
    """A fresh redis-server without persistence; yields its URL and stops it on exit."""
    executable = _executable()
    with tempfile.TemporaryDirectory(prefix="redis-test-") as workdir:
        log = Path(workdir) / "redis.log"
        for _attempt in range(START_ATTEMPTS):
            port = free_port()
            with log.open("wb") as log_file:
                proc = subprocess.Popen(
                    _command(executable, port, workdir), stdout=log_file, stderr=subprocess.STDOUT
                )
            try:
                if _wait_for_ping(proc, port):
                    yield f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                _stop(proc)
        raise RuntimeError(f"redis-server did not start: {log.read_text(errors='replace')[-2000:]}")


class RedisServer:
    """A redis-server on one loopback port that a test stops and starts again, on that same port.

    Created stopped: until :meth:`start`, :attr:`url` refuses connections, as a Redis that is down.
    With ``password``, the server requires it and the URL carries it (``redis://:<password>@...``).
    """

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self._executable = _executable()
        self.workdir = workdir
        self.password = password
        self.port = free_port()
        self._log = workdir / f"redis-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING (RuntimeError if it does not)."""
        if self.running:
            return
        command = _command(self._executable, self.port, str(self.workdir))
        if self.password:
            command += ["--requirepass", self.password]
        with self._log.open("ab") as log_file:
            self._proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        if not _wait_for_ping(self._proc, self.port, self.password):
            _stop(self._proc)
            raise RuntimeError(f"redis-server did not start: {self._log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Stop the server (its data goes with it: no persistence)."""
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _executable() -> str:
    executable = find_redis_server()
    if executable is None:
        raise RuntimeError(NOT_INSTALLED)
    return executable


def _command(executable: str, port: int, workdir: str) -> list[str]:
    """redis-server on ``port`` of the loopback only, without persistence."""
    return [
        executable,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
    ]


def _wait_for_ping(proc: subprocess.Popen[bytes], port: int, password: str | None = None) -> bool:
    """True once the server answers PING; False if it exited (port taken) or never answered."""
    client = redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_connect_timeout=0.5, socket_timeout=0.5
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
