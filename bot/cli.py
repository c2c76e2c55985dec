"""``python -m bot.cli``: cut out a folder of photos from a terminal, through the same pipeline as the bot.

    python -m bot.cli guests/ --out props/ --prop --outline --zip

Every photo goes through the bot's own service: the same checks, the same cache under ``DATA_DIR``
(a photo cut out before costs nothing), the same QPS budget for PicWish (shared through ``REDIS_URL``
with running bots), the same renderer. Results are written to ``--out``; a progress bar shows the
way, and a summary ends it. The exit code is 1 when any photo failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bot import errors
from bot.admission import UserLimits
from bot.app import local_engine
from bot.backends.base import CutoutBackend
from bot.backends.picwish import PicWishClient
from bot.budget import QpsBudget, make_budget
from bot.config import ConfigError, Settings, load_settings
from bot.domain import CutoutOptions, JobState, Output, Part, Size
from bot.imaging import INPUT_EXTENSIONS, write_zip_parts
from bot.logsetup import configure_logging
from bot.pipeline.contracts import JobSpec, PropFile, SentSticker, Sticker
from bot.pipeline.service import CutoutService
from bot.pipeline.status import Status
from bot.storage import JobRecord, Store, StoreUnavailable
from bot.storage.migrations import SchemaTooNew
from bot.texts import text

#: No per-user limits on the command line: its one "user" is whoever runs it.
_NO_LIMIT = 1_000_000


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(telegram=False)
        if args.backend:
            settings = replace(settings, cutout_backend=args.backend)
        if settings.cutout_backend == "picwish" and not settings.picwish_api_key:
            raise ConfigError("PICWISH_API_KEY is not set: set it in .env, or use --backend local")
        photos = _photos(args.inputs)
    except (ConfigError, errors.EngineMissing, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not photos:
        print("error: no pictures found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    configure_logging("WARNING", settings.secrets)
    options = CutoutOptions(
        crop=args.crop == "head",
        output=Output.JPG if args.format == "jpg" else Output.STICKER_AND_PNG if args.sticker else Output.PNG,
        outline=args.outline,
        size=Size.PRINT if args.prop else Size.STICKER,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        summary = asyncio.run(_run(settings, photos, options, args.out))
    except (errors.EngineMissing, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaTooNew as exc:
        print(
            f"error: {settings.data_dir / 'cli.sqlite3'} was made by a newer release ({exc}); "
            "run that release, or point DATA_DIR at another folder",
            file=sys.stderr,
        )
        return 2
    if args.zip and summary.written:
        parts = write_zip_parts(
            [(path, path.name) for path in summary.written], args.out, args.zip_name, max_part_bytes=2**62
        )
        print(f"ZIP: {', '.join(str(p) for p in parts)}")
    print(summary.report())
    return 1 if summary.failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="pictures, or folders of them")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the results go")
    parser.add_argument("--crop", choices=("head", "photo"), default="head",
                        help="tight to the head (default) or the photo's whole canvas")
    parser.add_argument("--format", choices=("png", "jpg"), default="png",
                        help="transparent PNG (default) or JPG on white")
    parser.add_argument("--outline", action="store_true", help="a white sticker outline")
    parser.add_argument("--prop", action="store_true", help="also a print-ready prop at full resolution, 300 DPI")
    parser.add_argument("--sticker", action="store_true", help="also the 512 px WEBP sticker")
    parser.add_argument("--backend", choices=("picwish", "local"), help="override CUTOUT_BACKEND")
    parser.add_argument("--zip", action="store_true", help="also one ZIP of everything written")
    parser.add_argument("--zip-name", default="cutouts", help="the ZIP's name (default: cutouts.zip)")
    return parser


def _photos(inputs: Sequence[str]) -> list[Path]:
    """The pictures named, and those in the folders named (sorted), each once."""
    found: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_EXTENSIONS and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{name} does not exist")
    return list(dict.fromkeys(found))


@dataclass
class _Summary:
    total: int
    written: list[Path] = field(default_factory=list)
    done: int = 0
    failed: Counter[str] = field(default_factory=Counter)

    def report(self) -> str:
        lines = [f"{self.done} of {self.total} done, {sum(self.failed.values())} failed"]
        lines += [f"  {count} × {reason}" for reason, count in self.failed.most_common()]
        return "\n".join(lines)


class _FileMessenger:
    """The service's chat side for a terminal: answers become files in ``out``, progress a bar."""

    def __init__(self, out: Path, photos: list[Path], summary: _Summary, bar: tqdm) -> None:
        self._out, self._photos, self._summary, self._bar = out, photos, summary, bar
        self.finished = asyncio.Event()

    def _stem(self, job: JobRecord) -> str:
        return self._photos[job.message_id].stem

    async def _write(self, job: JobRecord, part: Part, name: str, data: bytes | Path) -> None:
        """Write ``data`` (or copy that file) to ``out/name``; the job's last part finishes the photo."""
        path = self._out / name
        if isinstance(data, Path):
            await asyncio.to_thread(shutil.copyfile, data, path)
        else:
            await asyncio.to_thread(path.write_bytes, data)
        self._summary.written.append(path)
        if part is job.options.parts[-1]:
            self._summary.done += 1
            self._advance()

    async def post_status(self, job: JobRecord, status: Status, *, wanted: Callable[[], bool]) -> int | None:
        return None

    async def download(self, job: JobRecord) -> bytes:
        return await asyncio.to_thread(Path(job.file_id).read_bytes)

    async def ping(self) -> None:
        return None

    async def fetch_sticker(self, file_id: str) -> bytes:
        raise LookupError("no chat holds stickers for the command line")  # it never sends any

    async def show_status(self, job: JobRecord, status: Status, *, urgent: bool = False) -> None:
        return None

    async def chat_action(self, job: JobRecord) -> None:
        return None

    async def send_sticker(self, job: JobRecord, sticker: Sticker, known_id: str | None) -> SentSticker | None:
        await self._write(job, Part.STICKER, f"{self._stem(job)}.webp", sticker.webp)
        return None

    async def send_png(self, job: JobRecord, sticker: Sticker, *, pack_button: bool, offline: bool) -> None:
        await self._write(job, Part.PNG, f"{self._stem(job)}.png", sticker.png)

    async def send_jpg(self, job: JobRecord, jpg: bytes, *, offline: bool) -> None:
        await self._write(job, Part.JPG, f"{self._stem(job)}.jpg", jpg)

    async def send_prop(self, job: JobRecord, prop: PropFile) -> None:
        await self._write(job, Part.PROP, prop.file_name, prop.path)

    async def finish(self, job: JobRecord) -> None:
        return None  # no status message to retire: a photo is done with its last part (_write)

    async def fail(self, job: JobRecord, error: errors.CutoutError) -> None:
        reason = text(error.text_key, brief=True, max_pending=0, per_minute=0, seconds=0, width=0, height=0)
        self._summary.failed[reason] += 1
        self._bar.write(f"{self._photos[job.message_id]}: {reason}")
        self._advance()

    async def alert_admins(self, text_key: str, lang: str | None, **values: Any) -> None:
        self._bar.write(text(text_key, lang=lang, **values))

    def _advance(self) -> None:
        self._bar.update(1)
        if self._summary.done + sum(self._summary.failed.values()) >= self._summary.total:
            self.finished.set()


async def _run(settings: Settings, photos: list[Path], options: CutoutOptions, out: Path) -> _Summary:
    # The command line's own jobs table, beside the bot's: the cache files under DATA_DIR are shared.
    store = Store(settings.data_dir / "cli.sqlite3")
    for leftover in store.open_jobs():  # an earlier run that was interrupted: its photos are not ours
        store.update_job(leftover, state=JobState.FAILED, error="abandoned")
    budget: QpsBudget | None = None
    backend: CutoutBackend
    if settings.cutout_backend == "local":
        backend, workers = local_engine(settings.local_concurrency), settings.local_concurrency
    else:
        budget = make_budget(settings.picwish_qps, settings.redis_url, settings.picwish_api_key)
        backend = PicWishClient(settings.picwish_api_key, base_url=settings.picwish_api_url, budget=budget)
        workers = max(2, round(settings.picwish_qps * 3))
    service = CutoutService(
        store=store,
        backend=backend,
        data_dir=settings.data_dir,
        limits=UserLimits(_NO_LIMIT, _NO_LIMIT),
        workers=workers,
        budget=budget,
    )
    summary = _Summary(total=len(photos))
    with tqdm(total=len(photos), unit="photo", desc="cutouts") as bar:
        messenger = _FileMessenger(out, photos, summary, bar)
        await service.start(messenger)
        try:
            for index, path in enumerate(photos):
                try:
                    service.submit(_spec(index, path, options))
                except errors.CutoutError as exc:
                    await messenger.fail(_placeholder(index), exc)
            await messenger.finished.wait()
        finally:
            await service.stop(grace=5.0)
            await backend.aclose()
            if budget is not None:
                await budget.close()
            store.close()
    return summary


def _spec(index: int, path: Path, options: CutoutOptions) -> JobSpec:
    return JobSpec(
        user_id=0,
        chat_id=0,
        chat_type="private",
        message_id=index,
        file_id=str(path.resolve()),
        file_unique_id=f"file:{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}",
        file_size=path.stat().st_size,
        file_name=path.name,
        source_name=path.name,
        options=options,
    )


def _placeholder(index: int) -> JobRecord:
    return JobRecord(id="", user_id=0, chat_id=0, chat_type="private", message_id=index, file_id="", file_unique_id="")


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    sys.exit(main())
