"""The PicWish stand-in in a process of its own, for the load benchmark.

In the benchmark's own process the stand-in shares one GIL with the Telegram stand-in, which parses
every sticker and PNG the bot uploads: a request's arrival could be stamped tens of milliseconds
late, and the QPS window it is judged by would count a burst the bot never sent. The real API runs
on its own machine; here it gets its own interpreter. Its clock is ``time.monotonic()``, which is
the same for every process on the machine, so its times compare with the benchmark's.

Only what bench/load.py asks of a ``FakePicWish`` is offered, over a pipe.
"""

from __future__ import annotations

import multiprocessing
import random
from multiprocessing.connection import Connection
from typing import Any

from tests.standins.picwish_api import ApiRequest, FakePicWish, Outcome

_REPLY_TIMEOUT = 60.0  # seconds: a stand-in that does not answer a question by then is broken


def _serve(pipe: Connection, api_key: str, qps: float, latency: tuple[float, float], seed: int) -> None:
    rng = random.Random(seed)
    low, high = latency
    with FakePicWish(api_key, qps=qps, latency=lambda: rng.uniform(low, high)) as fake:
        pipe.send(fake.url)
        while True:
            command, argument = pipe.recv()
            if command == "stop":
                break
            if command == "script":
                fake.script(*argument)
                pipe.send(None)
            elif command == "prime":
                fake.prime(argument)
                pipe.send(None)
            elif command == "max_in_window":
                pipe.send(fake.max_in_window())
            else:  # a property: requests, count_429, cut_while_serving
                pipe.send(getattr(fake, command))
    pipe.send(None)


class PicWishProcess:
    """A ``FakePicWish`` answering from a child process; a context manager, like the stand-in."""

    def __init__(self, api_key: str, *, qps: float, latency: tuple[float, float], seed: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, api_key, qps, latency, seed), name="picwish-standin", daemon=True
        )
        self.url = ""

    def __enter__(self) -> PicWishProcess:
        self._process.start()
        self.url = self._receive()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.is_alive():
            self._pipe.send(("stop", None))
            self._receive()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()

    def _ask(self, command: str, argument: Any = None, *, timeout: float = _REPLY_TIMEOUT) -> Any:
        self._pipe.send((command, argument))
        return self._receive(timeout)

    def _receive(self, timeout: float = _REPLY_TIMEOUT) -> Any:
        if not self._pipe.poll(timeout):
            raise TimeoutError(f"the PicWish stand-in did not answer within {timeout:g} s")
        return self._pipe.recv()

    def script(self, *outcomes: Outcome) -> None:
        self._ask("script", outcomes)

    def prime(self, uploads: list[bytes]) -> None:
        """``FakePicWish.prime``: these uploads cut out ahead of time (a second a hundred, or so)."""
        self._ask("prime", uploads, timeout=_REPLY_TIMEOUT + len(uploads) / 10)

    @property
    def requests(self) -> list[ApiRequest]:
        return list(self._ask("requests"))

    def creates(self) -> list[ApiRequest]:
        return [r for r in self.requests if r.kind == "create"]

    @property
    def count_429(self) -> int:
        return int(self._ask("count_429"))

    @property
    def cut_while_serving(self) -> int:
        return int(self._ask("cut_while_serving"))

    def max_in_window(self) -> int:
        return int(self._ask("max_in_window"))
