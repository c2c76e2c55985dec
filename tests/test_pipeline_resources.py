"""CPU and memory per picture: decoded pixels bounded across threads, large blocks given back to the
system once freed, and a fresh API answer handed to its render in memory."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from bot import errors, imaging
from bot.imaging import memory, render
from bot.pipeline import keeper as keeper_module
from bot.pipeline.keeper import Keeper
from bot.storage import Store
from bot.storage.disk import DiskSpace

ROOT = Path(__file__).resolve().parent.parent


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def cutout(size: tuple[int, int] = (600, 400)) -> bytes:
    """An API-like answer: an opaque ellipse on a transparent canvas."""
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(canvas).ellipse(
        (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), (200, 90, 40, 255)
    )
    return encode(canvas, "PNG")


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (other threads make it true), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not come true")
        time.sleep(0.002)


class RecordingBudget(memory.PixelBudget):
    """A budget with room for anything that notes what each decode asked for."""

    def __init__(self) -> None:
        super().__init__(10**12)
        self.asked: list[int] = []

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        self.asked.append(pixels)
        with super().hold(pixels):
            yield


# --- the bound on decoded pixels -----------------------------------------------------------------
def test_no_more_full_size_decodes_run_at_once_than_the_budget_has_room_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = cutout()
    budget = memory.PixelBudget(2 * 600 * 400)  # room for two of these answers
    monkeypatch.setattr(memory, "DECODES", budget)
    decoding_now, most = 0, 0
    counted = threading.Lock()
    go_on = threading.Event()

    def held(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``decode`` (Pillow's or the quick PNG reader), counted and held until the test goes on."""

        def decode_when_told(source: Any) -> Any:
            nonlocal decoding_now, most
            with counted:
                decoding_now += 1
                most = max(most, decoding_now)
            go_on.wait(10)
            try:
                return decode(source)
            finally:
                with counted:
                    decoding_now -= 1

        return decode_when_told

    monkeypatch.setattr(render, "load", held(render.load))
    monkeypatch.setattr(render, "decode_plain_png", held(render.decode_plain_png))
    with ThreadPoolExecutor(5) as pool:
        renders = [pool.submit(imaging.render_sticker, answer) for _ in range(5)]
        until(lambda: budget.waiting == 3)
        assert decoding_now == 2  # two decode, three wait for room
        go_on.set()
        stickers = [r.result(timeout=30) for r in renders]
    assert most == 2
    assert budget.held == 0
    assert len({s.png for s in stickers}) == 1  # all made, the same


def test_a_large_decode_is_not_overtaken_by_small_ones() -> None:
    budget = memory.PixelBudget(4)
    entered: list[str] = []
    release = {name: threading.Event() for name in ("first", "large", "small")}

    def decode(name: str, pixels: int) -> None:
        with budget.hold(pixels):
            entered.append(name)
            release[name].wait(10)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(decode, "first", 1)
        until(lambda: entered == ["first"])
        large = pool.submit(decode, "large", 100)  # more than the budget: it waits to run alone
        until(lambda: budget.waiting == 1)
        small = pool.submit(decode, "small", 1)  # would fit now, but comes after the large one
        until(lambda: budget.waiting == 2)
        release["first"].set()
        first.result(10)
        until(lambda: entered == ["first", "large"])
        assert budget.held == 4 and budget.waiting == 1
        release["large"].set()
        release["small"].set()
        large.result(10)
        small.result(10)
    assert entered == ["first", "large", "small"]
    assert budget.held == 0


def test_each_full_size_decode_asks_for_its_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = RecordingBudget()
    monkeypatch.setattr(memory, "DECODES", budget)
    photo = Image.new("RGB", (640, 480), (120, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # held sideways: decoded to be turned upright
    imaging.prepare_upload(encode(photo, "JPEG", exif=exif))
    imaging.prepare_upload(encode(photo, "PNG", transparency=(0, 0, 0)))  # flattened onto white
    assert budget.asked == [640 * 480, 640 * 480]
    answer = cutout((300, 200))
    imaging.render_sticker(answer)
    imaging.render_prop(answer)
    imaging.render_jpg_photo(answer)
    assert budget.asked[2:] == [300 * 200] * 3
    assert budget.held == 0


def test_a_jpeg_that_goes_up_as_it_is_takes_no_room(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = RecordingBudget()
    monkeypatch.setattr(memory, "DECODES", budget)
    raw = encode(Image.new("RGB", (4000, 3000), (90, 90, 90)), "JPEG")
    assert imaging.prepare_upload(raw).data == raw  # checked at 1/8 scale only
    assert budget.asked == []


def test_a_draft_decode_asks_only_for_the_pixels_it_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = RecordingBudget()
    monkeypatch.setattr(memory, "DECODES", budget)
    prepared = imaging.prepare_upload(encode(Image.new("RGB", (8192, 4096), (90, 90, 90)), "JPEG"))
    assert (prepared.width, prepared.height) == (4096, 2048)
    assert budget.asked == [4096 * 2048]  # libjpeg decoded it at half scale


def test_a_broken_image_gives_its_room_back(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = memory.PixelBudget(600 * 400)
    monkeypatch.setattr(memory, "DECODES", budget)
    answer = cutout()
    with pytest.raises(errors.CorruptImage):
        imaging.render_sticker(answer[: len(answer) // 2])  # its header, then a cut in the pixels
    upload = encode(Image.new("RGB", (600, 400), "grey"), "PNG", transparency=(0, 0, 0))
    with pytest.raises(errors.CorruptImage):
        imaging.prepare_upload(upload[: len(upload) // 2])
    assert budget.held == 0 and budget.waiting == 0
    imaging.render_sticker(cutout())  # the whole budget is there for the next


# --- large blocks given back ---------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_images_freed_in_worker_threads_give_their_memory_back() -> None:
    """What a render leaves behind (its small results) outlives the images it decoded; without the
    fixed mmap threshold, the arenas of four worker threads kept those images: about 240 MB here."""
    script = textwrap.dedent(
        """
        import threading
        from pathlib import Path
        from PIL import Image
        import bot.imaging

        def rss_mb():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

        results = []

        def render():
            for _ in range(3):
                im = Image.radial_gradient("L").resize((4000, 3000)).convert("RGBA")
                results.append(bytes(200_000))
                im = im.transpose(Image.Transpose.ROTATE_90)
                results.append(bytes(300_000))
                del im

        before = rss_mb()
        workers = [threading.Thread(target=render) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print(round(rss_mb() - before))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    kept_mb = int(child.stdout)
    print(f"resident after four threads each made and freed three 4000 x 3000 images: +{kept_mb} MB")
    assert kept_mb < 40


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_photos_render_reuses_its_memory_rather_than_faulting_it_in_again() -> None:
    """With the mmap threshold fixed, the trim threshold stays at 128 KB unless set too: each render
    of a 1280 px photo's answer then faulted in about 2,500 pages again (5 ms of CPU)."""
    script = textwrap.dedent(
        """
        import io, resource, threading
        from PIL import Image, ImageDraw
        from bot import imaging

        canvas = Image.new("RGBA", (576, 704), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).ellipse((40, 40, 536, 664), (200, 90, 40, 255))
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG")
        answer = buffer.getvalue()
        faults = []

        def render():
            for _ in range(5):
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                imaging.render_sticker(answer)
                faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

        worker = threading.Thread(target=render)
        worker.start()
        worker.join()
        print(max(faults[2:]))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    faults = int(child.stdout)
    print(f"page faults of a 1280 px photo's render, once warm: {faults}")
    assert faults < 250


# --- a fresh answer handed over ------------------------------------------------------------------
@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[Keeper]:
    store = Store(tmp_path / "bot.sqlite3")

    async def alert(text_key: str, free_mb: int) -> None:
        pass

    yield Keeper(store, tmp_path, DiskSpace(tmp_path, 0), alert)
    store.close()


def test_a_handed_over_file_is_read_once_from_memory(keeper: Keeper) -> None:
    path = keeper.result_path("ab" * 32, "png")

    async def scenario() -> tuple[bytes, bytes]:
        assert await keeper.write({path: b"answer"}, hand_over=True)
        assert path.read_bytes() == b"answer"  # on disk all the same, for the cache
        path.write_bytes(b"changed on disk")
        first = await keeper.read(path)  # the bytes just written, not the file
        second = await keeper.read(path)  # from then on, the file
        return first, second

    assert asyncio.run(scenario()) == (b"answer", b"changed on disk")


def test_a_plain_write_is_read_back_from_disk(keeper: Keeper) -> None:
    path = keeper.result_path("cd" * 32, "png")

    async def scenario() -> bytes:
        await keeper.write({path: b"answer"})
        path.write_bytes(b"changed on disk")
        return await keeper.read(path)

    assert asyncio.run(scenario()) == b"changed on disk"


def test_files_handed_over_but_never_read_are_dropped_oldest_first(
    keeper: Keeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keeper_module, "HAND_OVER_BYTES", 10)
    paths = [keeper.result_path(f"{i:02d}" * 32, "png") for i in range(3)]

    async def scenario() -> list[bytes]:
        for i, path in enumerate(paths):
            await keeper.write({path: f"answer{i}".encode()}, hand_over=True)  # 7 bytes each
            path.write_bytes(b"on disk")
        return [await keeper.read(path) for path in paths]

    assert asyncio.run(scenario()) == [b"on disk", b"on disk", b"answer2"]


def test_a_finished_jobs_upload_is_deleted_off_the_event_loop(
    keeper: Keeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = keeper.new_job(
        user_id=1, chat_id=1, chat_type="private", message_id=1, file_id="f", file_unique_id="u"
    )
    path = keeper.incoming_path(job)
    deleted_in: list[int] = []
    unlink = Path.unlink

    def recording_unlink(self: Path, missing_ok: bool = False) -> None:
        deleted_in.append(threading.get_ident())
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording_unlink)

    async def scenario() -> None:
        await keeper.write({path: b"upload"}, hand_over=True)
        keeper.forget_upload(job)
        await keeper.close()  # a stop waits for the deletions under way

    asyncio.run(scenario())
    assert not path.exists()
    assert deleted_in and threading.get_ident() not in deleted_in
