"""End to end: the real Application over real HTTP against both stand-ins, as a user sees it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import USER
from tests.harness import ROOT, BotProcess, BotThread, astronaut_jpeg, bot_env, open_image
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram


def _result_files(telegram: FakeTelegram, chat_id: int = USER) -> tuple[Image.Image, int, Image.Image]:
    sticker_call = telegram.wait_for_call("sendSticker", where=lambda c: int(c.params["chat_id"]) == chat_id)[
        0
    ]
    document_call = telegram.wait_for_call(
        "sendDocument", where=lambda c: int(c.params["chat_id"]) == chat_id
    )[0]
    sticker_bytes = next(iter(sticker_call.files.values()))
    png_bytes = next(iter(document_call.files.values()))
    return open_image(sticker_bytes), len(sticker_bytes), open_image(png_bytes)


def assert_sticker_rules(sticker: Image.Image, size: int) -> None:
    assert sticker.format == "WEBP"
    assert max(sticker.size) == 512 and min(sticker.size) <= 512
    assert size <= 512_000
    assert sticker.mode == "RGBA"


def assert_head_cutout(png: Image.Image) -> None:
    assert png.format == "PNG" and png.mode == "RGBA"
    assert max(png.size) == 512 and min(png.size) <= 512
    alpha = png.getchannel("A")
    w, h = png.size
    for corner in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]:
        assert alpha.getpixel(corner) == 0, f"corner {corner} is not transparent"
    # The head fills the middle of the trimmed cutout.
    assert alpha.getpixel((w // 2, h // 2)) == 255
    assert alpha.getpixel((w // 2, h // 3)) == 255


def test_private_photo_gets_sticker_and_transparent_png(
    telegram: FakeTelegram, picwish: FakePicWish, env
) -> None:
    with BotThread(env):
        photo = telegram.send_photo(USER, astronaut_jpeg())
        sticker, sticker_size, png = _result_files(telegram)
        assert_sticker_rules(sticker, sticker_size)
        assert_head_cutout(png)
        assert png.size == sticker.size

        # Both results are replies to the user's photo.
        for method in ("sendSticker", "sendDocument"):
            call = telegram.calls_to(method)[0]
            assert call.decoded["reply_parameters"]["message_id"] == photo["message_id"]
        shown = [m for m in telegram.messages_in(USER) if m.get("from", {}).get("is_bot")]
        assert [("sticker" in m, "document" in m) for m in shown] == [(True, False), (False, True)]
        # Nobody waited: a chat action showed the bot at work, and no status message came and went.
        to_the_chat = [c.method for c in telegram.calls if c.params.get("chat_id") is not None]
        print(f"Telegram calls to the chat for one photo: {to_the_chat}")
        assert to_the_chat == ["sendChatAction", "sendSticker", "sendDocument"]

    creates = picwish.creates()
    assert len(creates) == 1
    assert creates[0].fields.get("sync") == "1"
    assert creates[0].file_name and "image_url" not in creates[0].fields
    assert len(picwish.queries()) == 0


def test_image_document_gets_cutout(telegram: FakeTelegram, picwish: FakePicWish, env) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(astronaut_jpeg())).save(buffer, "PNG")
    with BotThread(env):
        telegram.send_document(USER, buffer.getvalue(), file_name="me.png", mime_type="image/png")
        sticker, size, png = _result_files(telegram)
        assert_sticker_rules(sticker, size)
        assert_head_cutout(png)
    assert len(picwish.creates()) == 1


def test_non_image_document_and_text_get_a_hint_and_spend_nothing(
    telegram: FakeTelegram, picwish: FakePicWish, env
) -> None:
    with BotThread(env):
        telegram.send_document(USER, b"%PDF-1.4 hello", file_name="cv.pdf", mime_type="application/pdf")
        telegram.send_text(USER, "hello bot")
        replies = telegram.wait_for_call("sendMessage", count=2)
        assert "isn't an image" in replies[0].params["text"]
        assert "Send me a photo" in replies[1].params["text"]
    assert picwish.requests == []
    assert not telegram.calls_to("getFile")


def test_start_and_help_say_what_to_send(telegram: FakeTelegram, env) -> None:
    with BotThread(env):
        menu = [c["command"] for c in telegram.commands["default/"]]
        assert menu == ["start", "help", "settings", "props", "zip", "pack", "lang", "cutout", "id"]
        telegram.send_text(USER, "/start")
        telegram.send_text(USER, "/help")
        telegram.send_text(USER, "/outline")
        start, help_, unknown = telegram.wait_for_call("sendMessage", count=3)
        assert "Send me a photo" in start.params["text"] and "Ada" in start.params["text"]
        for command in ("/cutout", "/settings", "/props", "/zip", "/pack", "@cutout_test_bot"):
            assert command in help_.params["text"]
        assert "/settings" in unknown.params["text"] and "don't know" in unknown.params["text"]
    readme = (ROOT / "README.md").read_text()
    for command in menu:
        assert f"`/{command}`" in readme, f"/{command} is in the menu but not in the README"


def test_sync_answer_still_processing_is_polled_to_the_end(
    telegram: FakeTelegram, picwish: FakePicWish, env
) -> None:
    picwish.script(Outcome.processing())
    with BotThread(env):
        telegram.send_photo(USER, astronaut_jpeg())
        _, _, png = _result_files(telegram)
        assert_head_cutout(png)
    assert len(picwish.creates()) == 1
    assert len(picwish.queries()) >= 1


def test_python_m_bot_answers_a_photo_then_stops_on_sigterm(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    bot = BotProcess(bot_env(telegram.url, picwish.url, tmp_path / "data"), tmp_path)
    try:
        telegram.wait_for_call("getUpdates", timeout=30)
        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendDocument", timeout=30)
        bot.terminate()
        assert bot.wait(timeout=10) == 0
    finally:
        bot.close()


def test_missing_token_stops_with_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
    env.update(PYTHONPATH=str(ROOT), ENV_FILE="")  # ENV_FILE: not the project's filled-in .env
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "TELEGRAM_BOT_TOKEN" in lines[0] and "BotFather" in lines[0]
    assert "Traceback" not in done.stderr


def test_malformed_setting_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
    env.update(PYTHONPATH=str(ROOT), ENV_FILE="")
    env.update(TELEGRAM_BOT_TOKEN="123456789:" + "a" * 30, PICWISH_API_KEY="k" * 16)
    env["PICWISH_QPS"] = "fast"
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "PICWISH_QPS" in done.stderr
