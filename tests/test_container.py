"""The container, without Docker (none here): the image's command and healthcheck, read from the
Dockerfile itself so the test breaks when they drift, run against the stand-ins; and what the
Dockerfile and compose.yaml promise (a non-root user, the data volume, a stop grace above the bot's)."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.config import load_settings
from tests.harness import API_KEY, BOT_TOKEN, ROOT, BotProcess, bot_env
from tests.redis_server import free_port
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

REQUIRED = {"TELEGRAM_BOT_TOKEN": BOT_TOKEN, "PICWISH_API_KEY": API_KEY}


def seconds(duration: str) -> float:
    """A Docker/compose duration (``30s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


@dataclass(frozen=True)
class Image:
    """What the Dockerfile says the image is."""

    instructions: list[tuple[str, str]]

    @classmethod
    def read(cls) -> Image:
        lines = (ROOT / "Dockerfile").read_text().splitlines()
        # Comment lines go first (even inside a continued instruction), then continuations are joined.
        text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        text = re.sub(r"\\\n", " ", text)
        instructions = []
        for line in filter(None, (line.strip() for line in text.splitlines())):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
        return cls(instructions)

    def all(self, keyword: str) -> list[str]:
        return [args for k, args in self.instructions if k == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the Dockerfile has no {keyword}"
        return found[-1]  # Docker uses the last CMD, USER, HEALTHCHECK...

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                name, eq, value = token.partition("=")
                assert eq, f"ENV {token!r} is not NAME=value"
                values[name] = value
        return values

    @property
    def cmd(self) -> list[str]:
        command = json.loads(self.last("CMD"))  # the exec form: SIGTERM reaches python, PID 1, not a shell
        assert isinstance(command, list) and all(isinstance(a, str) for a in command)
        return command

    @property
    def healthcheck(self) -> tuple[dict[str, str], str]:
        """The HEALTHCHECK's options (``--timeout=5s`` as ``{"timeout": "5s"}``) and its shell command."""
        match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.+)", self.last("HEALTHCHECK"))
        assert match, "HEALTHCHECK [--option=value ...] CMD <shell command>"
        options = dict(o[2:].split("=", 1) for o in match.group(1).split())
        return options, match.group(2)

    @property
    def stop_signal(self) -> signal.Signals:
        return signal.Signals[self.last("STOPSIGNAL")] if self.all("STOPSIGNAL") else signal.SIGTERM

    @property
    def volumes(self) -> list[str]:
        found: list[str] = []
        for args in self.all("VOLUME"):
            found += json.loads(args) if args.startswith("[") else args.split()
        return found


def with_this_python(command: str) -> str:
    """The HEALTHCHECK command with this interpreter in place of the image's ``python``."""
    assert re.match(r"python3?\s", command), f"the healthcheck runs python: {command!r}"
    return re.sub(r"^python3?", lambda _: shlex.quote(sys.executable), command)


def compose_service(name: str) -> str:
    """The lines of one service in compose.yaml (no YAML parser in the venv: its indentation)."""
    text = (ROOT / "compose.yaml").read_text()
    match = re.search(rf"^  {name}:\n((?:(?:    .*)?\n)*)", text, re.M)
    assert match, f"compose.yaml has no service {name}"
    return match.group(1)


def test_the_image_runs_as_a_non_root_user_and_keeps_its_data_on_a_volume() -> None:
    image = Image.read()
    user = image.last("USER").split(":")[0]
    assert user not in ("root", "0"), "the bot does not run as root"
    created = [a for a in image.all("RUN") if re.search(rf"useradd\b.*\b{re.escape(user)}\b", a)]
    assert created, f"the image creates the user {user}"
    uid = re.search(r"--uid\s+(\d+)", created[0])
    assert uid is None or int(uid.group(1)) != 0
    assert image.env["DATA_DIR"] in image.volumes, "the database and photos outlive the container"
    assert re.search(rf"chown\s+{re.escape(user)}\S*\s+{re.escape(image.env['DATA_DIR'])}", created[0]), (
        "the user may write its DATA_DIR"
    )
    assert image.env["METRICS_PORT"] in image.last("EXPOSE").split()
    assert image.cmd[0] == "python"


def test_compose_waits_for_a_healthy_redis_and_stops_the_bot_after_its_own_grace() -> None:
    bot = compose_service("bot")
    period = re.search(r"^    stop_grace_period:\s*[\"']?([0-9a-z.]+)", bot, re.M)
    assert period, "compose.yaml gives the bot a stop_grace_period"
    grace = load_settings({**Image.read().env, **REQUIRED}, dotenv=False).stop_grace_seconds
    assert grace == load_settings(REQUIRED, dotenv=False).stop_grace_seconds, "the image keeps the default"
    assert seconds(period.group(1)) > grace, "Docker kills the bot only after STOP_GRACE_SECONDS"
    assert re.search(r"^    depends_on:\n      redis:\n        condition:\s*service_healthy\s*$", bot, re.M)
    assert re.search(r"^    healthcheck:\n      test:", compose_service("redis"), re.M), "redis can be healthy"


def test_the_images_command_serves_its_healthcheck_and_stops_cleanly_on_its_stop_signal(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    image = Image.read()
    options, check = image.healthcheck
    check = with_this_python(check)
    # The Dockerfile's ENV as it stands, but for a data folder of the test's and a free loopback port.
    overrides = {"DATA_DIR": str(tmp_path / "data"), "METRICS_PORT": str(free_port()), "METRICS_LISTEN": "127.0.0.1"}
    assert overrides.keys() <= image.env.keys()
    env = {**bot_env(telegram.url, picwish.url, tmp_path / "data"), **image.env, **overrides}
    command = [sys.executable if arg == "python" else arg for arg in image.cmd]
    grace = load_settings(env, dotenv=False).stop_grace_seconds

    bot = BotProcess(env, tmp_path, command=command)

    def healthcheck() -> subprocess.CompletedProcess[str]:
        """The check as Docker runs it: in the container, with its environment (the bot's)."""
        try:
            return subprocess.run(
                check, shell=True, env=bot.env, capture_output=True, text=True, timeout=seconds(options["timeout"])
            )
        except subprocess.TimeoutExpired:  # Docker counts it as a failure
            return subprocess.CompletedProcess(check, -1, "", "timed out")

    try:
        # Docker's start period: failures do not count until it ends.
        deadline = time.monotonic() + seconds(options["start-period"])
        while (result := healthcheck()).returncode != 0 and time.monotonic() < deadline:
            assert bot.proc.poll() is None, bot.output
            time.sleep(0.2)  # between probes, not a wait for the bot: each probe is the check itself
        assert result.returncode == 0, f"{result.stderr}\n{bot.output}"
        assert telegram.calls_to("getMe"), "the bot it checks is the one talking to the Telegram stand-in"

        bot.proc.send_signal(image.stop_signal)
        assert bot.wait(timeout=grace) == 0, bot.output
    finally:
        bot.close()
    assert healthcheck().returncode != 0, "a stopped bot is unhealthy"
    assert "Traceback" not in bot.output
