"""The interface every cutout backend implements (the PicWish client today, an offline engine later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CutoutRequest:
    """A prepared upload, already within the API limits (format, pixels, bytes), or a link to a picture
    that the service fetches itself (``image_url``; then ``image`` is empty)."""

    image: bytes = field(repr=False)
    filename: str
    mime: str
    image_url: str | None = None
    crop: bool = True
    output_format: str = "png"
    # A hint after a failed attempt: use the API's async task mode (a backend may ignore it).
    prefer_async: bool = False
    # A task the backend started for this photo before a restart: wait for it rather than start (and
    # pay for) another. A backend without tasks ignores it.
    resume_task: str | None = None
    # Called with the id of a task the backend will poll, so it can be resumed after a restart.
    on_task: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    # Called once for each task the backend creates: each one is paid for.
    on_created: Callable[[], None] | None = field(default=None, repr=False, compare=False)


class CutoutBackend(Protocol):
    """Turns one image into a transparent head cutout."""

    name: str

    async def cutout(self, request: CutoutRequest) -> bytes:
        """Return the result image bytes; raise a :class:`bot.errors.CutoutError` subclass on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...
