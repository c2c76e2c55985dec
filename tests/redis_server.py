"""Start a throwaway redis-server on a free loopback port for tests.

    with running_redis_server() as url:
        ...  # "redis://127.0.0.1:<port>/0"

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
    executable = find_redis_server()
    if executable is None:
        raise RuntimeError(NOT_INSTALLED)
    with tempfile.TemporaryDirectory(prefix="redis-test-") as workdir:
        log = Path(workdir) / "redis.log"
        for _attempt in range(START_ATTEMPTS):
            port = free_port()
            with log.open("wb") as log_file:
                proc = subprocess.Popen(
                    [
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
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            try:
                if _wait_for_ping(proc, port):
                    yield f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                _stop(proc)
        raise RuntimeError(f"redis-server did not start: {log.read_text(errors='replace')[-2000:]}")


def _wait_for_ping(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server answers PING; False if it exited (port taken) or never answered."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
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
