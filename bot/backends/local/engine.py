"""The offline engine as a cutout backend: same requests, same kind of answer as the PicWish client."""

from __future__ import annotations

import asyncio

from bot import errors
from bot.backends.base import CutoutRequest
from bot.backends.local.models import Models, load_models


class LocalEngine:
    """Head cutouts on this machine's CPU: no API key, nothing downloaded at run time.

    The models load once per process, on first use or in :meth:`load`. Each cutout runs in a worker
    thread, at most ``concurrency`` at a time (each holds a few hundred MB at its peak), and each
    model run uses ``threads`` CPU threads.
    """

    name = "local"

    def __init__(self, *, concurrency: int = 1, threads: int = 2) -> None:
        if concurrency < 1 or threads < 1:
            raise ValueError("concurrency and threads must be at least 1")
        self.concurrency = concurrency
        self.threads = threads
        self._slots = asyncio.Semaphore(concurrency)

    def load(self) -> Models:
        """Load the models now (blocking: call it in a thread, or at start-up) instead of on first use.

        Raises :class:`errors.EngineMissing` when a package is missing.
        """
        return load_models(self.threads)

    async def cutout(self, request: CutoutRequest) -> bytes:
        """The head in ``request.image`` on transparency (PNG) or on white (JPG), at the input's scale."""
        if request.image_url is not None:
            raise errors.LinkUnsupported("the local engine reads uploaded images only")
        async with self._slots:
            return await asyncio.to_thread(self._cutout, request)

    def _cutout(self, request: CutoutRequest) -> bytes:
        from bot.backends.local.head import cut_head  # numpy is imported only when the engine is used

        return cut_head(self.load(), request.image, crop=request.crop, output_format=request.output_format)

    async def aclose(self) -> None:
        """Nothing to release: the models stay loaded for the process, shared with any other engine."""
