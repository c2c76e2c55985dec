"""The database at start-up: a DATA_DIR the bot cannot write, a database another bot holds, or a damaged
one stops ``python -m bot`` (and ``python -m bot.cli``) with one line that names the file or folder and
says what to do, and exit code 2; a bot already running on that DATA_DIR is not disturbed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.storage import Store, StoreUnavailable
from tests.conftest import USER
from tests.harness import ROOT, BotProcess, astronaut_jpeg, bot_env
from tests.mounts import tmpfs
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram


def run(env: dict[str, str], cwd: Path, module: str = "bot", *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module`` as the operator runs it (LOG_LEVEL at its default, INFO), to its exit."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
    full.update(env, LOG_LEVEL="INFO", PYTHONPATH=str(ROOT), ENV_FILE="")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )


def the_one_line(done: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2 and exactly one non-empty line of output (stdout and stderr), no traceback."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert done.returncode == 2, output
    return lines[0]


def real_database(path: Path, jobs: int = 2000) -> None:
    """A database made by the store, with enough rows to span many pages."""
    store = Store(path)
    common = {"user_id": USER, "chat_id": USER, "chat_type": "private", "file_id": "f" * 60, "file_unique_id": "u"}
    for n in range(jobs):
        store.new_job(message_id=n, origin_message_id=n, **common)
    store.close()


def refused_elsewhere(path: Path) -> str | None:
    """Open the store at ``path`` in another process: its StoreUnavailable line, or None if it opened."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom bot.storage import Store, StoreUnavailable\n"
        "try:\n    Store(Path(sys.argv[1])).close()\nexcept StoreUnavailable as exc:\n    print(exc)\n    sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 2), done.stderr
    return done.stdout.strip() if done.returncode == 2 else None


# --- a DATA_DIR the bot cannot write -----------------------------------------------------------------
def test_a_data_dir_that_cannot_be_created_stops_start_up_with_one_line(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("a regular file, where a folder should be")
    data = tmp_path / "afile" / "data"  # root or not, no folder can be made under a file
    line = the_one_line(run(bot_env(telegram.url, picwish.url, data), tmp_path))
    assert line.startswith(f"data error: cannot write to DATA_DIR {data} ("), line
    assert "writable by the user the bot runs as" in line and "set DATA_DIR" in line
    assert not telegram.calls_to("getUpdates")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs holding a database made by the store (and its lock file), then mounted read-only."""
    with tmpfs(tmp_path / "disk", 16) as mount:
        real_database(mount / "bot.sqlite3", jobs=10)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, timeout=30)
        assert remount.returncode == 0, remount.stderr
        yield mount


def test_a_read_only_data_dir_with_a_database_stops_start_up_with_one_line(
    telegram: FakeTelegram, picwish: FakePicWish, read_only_disk: Path, tmp_path: Path
) -> None:
    line = the_one_line(run(bot_env(telegram.url, picwish.url, read_only_disk), tmp_path))
    assert line.startswith(f"data error: cannot write to DATA_DIR {read_only_disk} ("), line
    assert "writable by the user the bot runs as" in line


# --- a damaged database ------------------------------------------------------------------------------
def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def truncated(path: Path) -> None:
    real_database(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def page_overwritten(path: Path) -> None:
    """Readable header, one b-tree page in the middle overwritten: only PRAGMA quick_check sees it."""
    real_database(path)
    with path.open("r+b") as file:
        file.seek(3 * 4096)
        file.write(os.urandom(4096))


@pytest.mark.parametrize("damage", [garbage, truncated, page_overwritten], ids=lambda f: f.__name__)
def test_a_damaged_database_stops_start_up_with_one_line(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    damage(data / "bot.sqlite3")
    line = the_one_line(run(bot_env(telegram.url, picwish.url, data), tmp_path))
    assert line.startswith(f"data error: {data / 'bot.sqlite3'} is damaged ("), line
    assert "restore it from a backup, or move it" in line and "start afresh" in line
    assert not telegram.calls_to("getUpdates")


# --- a database another bot holds --------------------------------------------------------------------
def test_a_second_bot_on_the_same_data_dir_stops_with_one_line_and_the_first_keeps_answering(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    env = bot_env(telegram.url, picwish.url, tmp_path / "data")
    first = BotProcess(env, tmp_path)
    try:
        telegram.wait_for_call("getUpdates", timeout=30)
        line = the_one_line(run(env, tmp_path))
        assert line.startswith(
            f"data error: another bot or a tool (pid {first.proc.pid}) holds {tmp_path / 'data' / 'bot.sqlite3'}: "
            "stop that process first."
        ), line
        assert "give each its own DATA_DIR" in line and "REDIS_URL" in line

        assert first.proc.poll() is None, first.output
        telegram.send_photo(USER, astronaut_jpeg())
        answer = telegram.wait_for_call("sendDocument", timeout=30)[0]
        assert answer.ok and int(answer.params["chat_id"]) == USER, answer.error
        first.terminate()
        assert first.wait() == 0, first.output
    finally:
        first.close()


# --- the command line, on its own database -----------------------------------------------------------
def test_the_command_line_stops_with_one_line_on_a_database_in_use_or_damaged(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = bot_env(telegram.url, picwish.url, data)
    (tmp_path / "guest.jpg").write_bytes(astronaut_jpeg())
    args = ("guest.jpg", "--out", "out")
    holder = Store(data / "cli.sqlite3")  # as another `python -m bot.cli` on this DATA_DIR would
    try:
        line = the_one_line(run(env, tmp_path, "bot.cli", *args))
        assert line.startswith(f"error: another bot or a tool (pid {os.getpid()}) holds {data / 'cli.sqlite3'}"), line
    finally:
        holder.close()
    garbage(data / "cli.sqlite3")
    line = the_one_line(run(env, tmp_path, "bot.cli", *args))
    assert line.startswith(f"error: {data / 'cli.sqlite3'} is damaged ("), line
    assert not picwish.requests


# --- the store itself --------------------------------------------------------------------------------
def test_a_store_opens_closes_and_opens_again_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    first = Store(path)
    first.set_published("menu", "1")
    first.close()
    first.close()  # a second close changes nothing
    again = Store(path)
    try:
        assert again.published("menu") == "1"
        assert (tmp_path / "bot.lock").read_text().strip() == str(os.getpid())
    finally:
        again.close()
    assert refused_elsewhere(path) is None, "closed: the lock is released"


def test_another_process_is_refused_while_any_store_of_this_one_is_open(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    one = Store(path)
    two = Store(path)  # the same process (a test beside the bot it runs in a thread) shares the lock
    try:
        refused = refused_elsewhere(path)
        assert refused is not None and refused.startswith(f"another bot or a tool (pid {os.getpid()}) holds {path}")
        one.close()
        assert refused_elsewhere(path) is not None, "still held by the other store"
    finally:
        one.close()
        two.close()
    assert refused_elsewhere(path) is None
    assert refused_elsewhere(tmp_path / "cli.sqlite3") is None, "each database has its own lock"


def test_a_damaged_store_is_refused_and_leaves_nothing_held(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    page_overwritten(path)
    with pytest.raises(StoreUnavailable, match=r"is damaged \(quick_check: "):
        Store(path)
    shutil.move(path, tmp_path / "bot.sqlite3.damaged")
    store = Store(path)  # moved away: a fresh database, and the lock was not kept by the refusal
    store.close()


def test_a_full_disk_at_start_up_is_named_as_such(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 4) as mount:
        real_database(mount / "bot.sqlite3", jobs=10)
        with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        with pytest.raises(StoreUnavailable, match=f"no room left on the disk of DATA_DIR {re.escape(str(mount))}"):
            Store(mount / "bot.sqlite3")


def test_a_tool_holding_a_write_lock_is_named_within_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    Store(path).close()
    tool = sqlite3.connect(path, isolation_level=None)
    try:
        tool.execute("BEGIN IMMEDIATE")
        tool.execute("PRAGMA user_version = 7")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f"another bot or a tool holds {re.escape(str(path))}: stop that process"):
            Store(path)
        assert time.monotonic() - started < 15, "found out, not hung"
    finally:
        tool.execute("ROLLBACK")
        tool.close()
    Store(path).close()
