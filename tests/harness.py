"""Run the real bot against the local stand-ins: in a thread (exactly ``run_polling``) or as ``python -m bot``."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.app import build_application
from bot.config import load_settings
from tests.standins.telegram_api import Call, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
BOT_TOKEN = "123456789:TEST-token_abcdefghijklmnopqrstuvwxyz"
API_KEY = "picwish-test-key-0123456789abcdef"


def bot_env(telegram_url: str, picwish_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment ``python -m bot`` reads, pointed at the stand-ins."""
    env = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_URL": telegram_url,
        "PICWISH_API_KEY": API_KEY,
        "PICWISH_API_URL": picwish_url,
        "PICWISH_QPS": "2",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "DEBUG",
    }
    env.update(extra)
    return env


class BotThread:
    """The real Application, built by ``build_application`` and run with ``run_polling`` in a thread."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.settings = load_settings(env, dotenv=False)
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bot", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.app = build_application(self.settings)
            original = self.app.post_init

            async def post_init(app: Any) -> None:
                await original(app)
                # Ready once the application runs: a stop asked for before that would be ignored.
                asyncio.get_running_loop().create_task(self._when_running(app))

            self.app.post_init = post_init
            self.app.run_polling(stop_signals=None, close_loop=False)
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc
        finally:
            self._ready.set()
            self.loop.close()

    async def _when_running(self, app: Any) -> None:
        for _ in range(2000):  # 20 s at most
            if app.running:
                break
            await asyncio.sleep(0.01)
        self._ready.set()

    def start(self, timeout: float = 20.0) -> BotThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the bot did not start")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.loop is not None and self._thread.is_alive() and self.app is not None:
            self.loop.call_soon_threadsafe(self.app.stop_running)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the bot did not stop")
        if self.error is not None:
            raise self.error

    @property
    def service(self) -> Any:
        return self.app.bot_data["service"]

    def __enter__(self) -> BotThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BotProcess:
    """``python -m bot`` (or ``command``) as a child process with the given environment (stderr captured
    to a file)."""

    def __init__(self, env: Mapping[str, str], workdir: Path, command: Sequence[str] | None = None) -> None:
        self.log_path = workdir / f"bot-{os.urandom(3).hex()}.log"
        self._log = self.log_path.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
        full_env["ENV_FILE"] = ""  # no .env of the developer's (the project's) reaches the bot under test
        full_env.update(env)
        full_env["PYTHONPATH"] = str(ROOT)
        self.env = full_env  # as the child has it
        self.proc = subprocess.Popen(
            list(command or [sys.executable, "-m", "bot"]),
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.proc.kill()

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class AnswerOnceThenHangUp:
    """A raw loopback server's handler: each connection gets one answer that says keep-alive, then the
    server closes it (a keep-alive it does not keep). ``accepted`` counts connections; ``hung_up`` is
    set once one was closed."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.accepted = 0
        self.hung_up = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(self.body)
        writer.write(head + self.body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.hung_up.set()


def astronaut_jpeg(quality: int = 90, size: int | None = None) -> bytes:
    from skimage import data

    image = Image.fromarray(data.astronaut())
    if size:
        image = image.resize((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def variant_jpeg(seed: int) -> bytes:
    """A distinct portrait-like photo per seed (so each is a new image, not a cache hit)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    pixels = data.astronaut().astype(np.int16) + rng.integers(-12, 12, size=(512, 512, 3), dtype=np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def in_chat(chat_id: int) -> Callable[[Call], bool]:
    return lambda call: int(call.params["chat_id"]) == chat_id


def next_message(telegram: FakeTelegram, chat_id: int, action: Callable[[], object]) -> Call:
    """Do ``action`` (a user's message); return the bot's next sendMessage in that chat."""
    before = len([c for c in telegram.calls_to("sendMessage") if in_chat(chat_id)(c)])
    action()
    call = telegram.wait_for_call("sendMessage", count=before + 1, where=in_chat(chat_id))[before]
    assert call.ok, call.error
    return call


def say(telegram: FakeTelegram, user: int, words: str, *, chat_id: int | None = None, **kw: Any) -> Call:
    """``user`` sends ``words`` privately (or in the group ``chat_id``); return the bot's next message there."""
    if chat_id is None:
        return next_message(telegram, user, lambda: telegram.send_text(user, words, **kw))
    return next_message(
        telegram, chat_id, lambda: telegram.send_text(user, words, chat_id=chat_id, chat_type="supergroup", **kw)
    )
