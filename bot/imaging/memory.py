"""Keeping the memory of decoded images bounded, however many large pictures arrive at once.

Two parts: a budget of pixels held decoded at once across threads (:data:`DECODES`, entered with
:func:`decoding` around each full-size decode and the work on its pixels), and glibc's malloc told
to give large blocks back to the system when they are freed.

Why the second: glibc serves a block over its mmap threshold (128 KB at first) with a mapping of its
own, unmapped when freed, but raises the threshold to the size of each such block freed, up to 32 MB.
After the first large image, decoded images therefore come from the arena of the thread that decodes
them, and stay there once freed; with an arena per worker thread, each kept its own largest image.
Twenty 4000 x 3000 documents at once took the bot past 450 MB (140 MB once idle again), with decodes
bounded or not. Fixed thresholds keep what a 1280 px photo needs (images under 4 MB) in its thread's
arena, reused from one photo to the next, and map anything bigger on its own: about 250 MB for the
twenty documents (100 MB idle). The trim threshold must be fixed too: once the mmap threshold is
set it stays at 128 KB, and each render faulted its memory in again (2,500 page faults, 5 ms).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from PIL import Image

# Pixels held decoded at once, across threads: one 4000 x 3000 photo, or four 1800 x 1651 answers.
# Decoding one and working on it (turning it upright, converting, cropping, premultiplying) peaks at
# 6 to 8 bytes a pixel: 70 to 90 MB for 4000 x 3000. Two cores keep busy with that much at a time.
DECODE_BUDGET_PIXELS = 4000 * 3000
MMAP_THRESHOLD = 4 << 20  # bytes: a block from this size up is mapped on its own, unmapped when freed
TRIM_THRESHOLD = 8 << 20  # bytes: an arena gives back the free memory at its top beyond this
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameter numbers (malloc.h)


class PixelBudget:
    """A bound on the pixels held decoded at once, across threads, taken first come, first served.

    A decode bigger than the whole budget waits until it can run alone.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held = 0
        self._line: deque[object] = deque()  # a ticket per waiting decode, in order of arrival
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        """Pixels held now."""
        with self._changed:
            return self._held

    @property
    def waiting(self) -> int:
        """Decodes waiting for room."""
        with self._changed:
            return len(self._line)

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait for room for ``pixels``, and hold it while the block runs."""
        need = max(1, min(pixels, self.capacity))
        ticket = object()
        with self._changed:
            self._line.append(ticket)
            try:
                self._changed.wait_for(lambda: self._line[0] is ticket and self._held + need <= self.capacity)
            finally:  # in, or given up: either way out of the line, and the next in line may fit
                self._line.remove(ticket)
                self._changed.notify_all()
            self._held += need
        try:
            yield
        finally:
            with self._changed:
                self._held -= need
                self._changed.notify_all()


#: Every full-size decode of the process goes through this one budget (prepare and render alike).
DECODES = PixelBudget(DECODE_BUDGET_PIXELS)


def decoding(im: Image.Image) -> AbstractContextManager[None]:
    """Room in :data:`DECODES` for ``im``'s pixels (opened, any draft set: its size as it will be
    decoded), to hold from before it is loaded until it and its copies are dropped."""
    return DECODES.hold(im.width * im.height)


def _unmap_large_blocks() -> None:
    """Fix glibc's mmap and trim thresholds (see the module's docstring); elsewhere nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl's is a no-op anyway)
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


_unmap_large_blocks()
