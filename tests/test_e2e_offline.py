"""End to end: no API key needed. The offline engine answers through the Telegram stand-in, stands in
for PicWish when asked to, and the command line runs a folder of photos through the same pipeline."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bot.backends.local import check_installed
from bot.errors import EngineMissing
from bot.texts import text
from tests.conftest import USER
from tests.harness import ROOT, BotThread, astronaut_jpeg, open_image, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram
from tests.test_e2e_cutout import assert_sticker_rules


def _engine_missing() -> str | None:
    try:
        check_installed()
    except EngineMissing as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_engine_missing() is not None, reason=f"{_engine_missing()} (make install installs it)")


def coffee_jpeg() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).save(buffer, "JPEG")
    return buffer.getvalue()


def without_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "PICWISH_API_KEY"}


def test_with_only_a_bot_token_the_offline_engine_answers_a_portrait(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(without_key(env)):
        telegram.send_photo(USER, astronaut_jpeg())
        sticker_call = telegram.wait_for_call("sendSticker", timeout=60)[0]
        png_call = telegram.wait_for_call("sendDocument", timeout=60)[0]
        telegram.send_photo(USER, coffee_jpeg())
        no_face = telegram.wait_for_call(
            "sendMessage", where=lambda c: c.params["text"] == text("no_face"), timeout=60
        )[0]
        telegram.send_text(USER, "https://example.org/me.jpg")
        link = telegram.wait_for_call(
            "sendMessage", where=lambda c: c.params["text"] == text("link_unsupported"), timeout=60
        )[0]
    sticker = next(iter(sticker_call.files.values()))
    assert_sticker_rules(open_image(sticker), len(sticker))
    png = open_image(next(iter(png_call.files.values())))
    width, height = png.size
    alpha = png.getchannel("A")
    assert alpha.getpixel((width // 2, height // 2)) == 255, "the face is opaque"
    assert all(alpha.getpixel(c) == 0 for c in [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)])
    assert "Made offline" not in (png_call.params.get("caption") or ""), "offline is the normal mode here"
    assert no_face.ok and link.ok
    assert picwish.requests == [], "no API key, no API call"


def test_fallback_answers_while_picwish_rejects_the_key_and_says_so(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.http(401), Outcome.http(401))
    with BotThread({**env, "FALLBACK": "local"}):
        telegram.send_photo(USER, variant_jpeg(5))
        png_call = telegram.wait_for_call("sendDocument", timeout=60)[0]
    assert text("made_offline") in png_call.params["caption"]
    assert telegram.calls_to("sendSticker")[0].ok
    assert len(picwish.creates()) == 1, "a rejected key is not retried"


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
    full.update(env, PYTHONPATH=str(ROOT), ENV_FILE="")
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300
    )


def test_command_line_turns_a_folder_into_props_and_a_zip_with_the_offline_engine(tmp_path: Path) -> None:
    guests = tmp_path / "guests"
    guests.mkdir()
    (guests / "guest-0001.jpg").write_bytes(astronaut_jpeg())
    (guests / "guest-0002.jpg").write_bytes(variant_jpeg(9))
    (guests / "table.jpg").write_bytes(coffee_jpeg())
    (guests / "notes.txt").write_text("not a picture")
    out = tmp_path / "prints"
    done = run_cli(
        [str(guests), "--out", str(out), "--prop", "--outline", "--zip"],
        {"DATA_DIR": str(tmp_path / "data"), "CUTOUT_BACKEND": "local"},
        tmp_path,
    )
    assert done.returncode == 1, done.stderr  # the coffee cup has no face
    assert "2 of 3 done, 1 failed" in done.stdout
    assert text("no_face", brief=True) in done.stdout
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "cutouts.zip", "guest-0001-prop.png", "guest-0001.png", "guest-0002-prop.png", "guest-0002.png",
    ]
    prop = open_image((out / "guest-0001-prop.png").read_bytes())
    assert tuple(round(v) for v in prop.info["dpi"]) == (300, 300)
    with zipfile.ZipFile(out / "cutouts.zip") as archive:
        assert sorted(archive.namelist()) == written[1:]


def test_command_line_keeps_the_qps_cap_and_reuses_the_cache_with_picwish(
    picwish: FakePicWish, tmp_path: Path
) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    for n in range(4):
        (photos / f"p{n}.jpg").write_bytes(variant_jpeg(30 + n))
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "PICWISH_API_KEY": "picwish-test-key-0123456789abcdef",
        "PICWISH_API_URL": picwish.url,
    }
    first = run_cli([str(photos), "--out", str(tmp_path / "a"), "--sticker"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "4 of 4 done, 0 failed" in first.stdout
    assert len(picwish.creates()) == 4 and picwish.count_429 == 0 and picwish.max_in_window() <= 2
    second = run_cli([str(photos), "--out", str(tmp_path / "b")], env, tmp_path)
    assert second.returncode == 0 and len(picwish.creates()) == 4, "the second run is answered from the cache"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [f"p{n}.{ext}" for n in range(4) for ext in ("png", "webp")]
    )
