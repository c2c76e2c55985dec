"""One small hierarchy for everything that can go wrong with a cutout.

Each error knows whether it is worth retrying and which friendly text (a key into
``bot.texts``) the user should see. Error texts never contain secrets: they are built
from status codes and states, never from URLs or headers.
"""

from __future__ import annotations


class CutoutError(Exception):
    """Base of every error a cutout job can end with."""

    retryable: bool = False
    text_key: str = "error_generic"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail


# --- the user's input, refused before any quota is spent -----------------------------------------
class BadInput(CutoutError):
    """The file we were given cannot become a cutout."""

    text_key = "bad_input"


class NotAnImage(BadInput):
    text_key = "not_an_image"


class EmptyFile(BadInput):
    text_key = "empty_file"


class CorruptImage(BadInput):
    text_key = "corrupt_image"


class ImageTooLarge(BadInput):
    """Too many pixels (a decompression bomb) or too many bytes to download."""

    text_key = "image_too_large"


class ImageTooSmall(BadInput):
    """Under 128 px on its long side: too few pixels to find a face in. Known before any API call."""

    text_key = "image_too_small"

    def __init__(self, detail: str = "", *, width: int = 0, height: int = 0) -> None:
        super().__init__(detail)
        self.width = width  # as the user sees it (after EXIF orientation), for the text
        self.height = height


class FileTooBig(BadInput):
    """Over Telegram's 20 MB download limit; known from ``file_size`` before any download."""

    text_key = "file_too_big"


class ExtremeAspectRatio(BadInput):
    text_key = "extreme_aspect"


# --- the API ---------------------------------------------------------------------------------------
class ApiError(CutoutError):
    """The cutout service answered with a failure."""

    text_key = "api_failed"

    def __init__(self, detail: str = "", *, http_status: int | None = None, state: int | None = None) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.state = state


class BadRequest(ApiError):  # 400
    text_key = "api_bad_request"


class Unauthorized(ApiError):  # 401: the key is wrong or the service is off; admins are alerted
    text_key = "service_unavailable"


class NotFound(ApiError):  # 404: unknown task, or an expired result
    text_key = "api_failed"
    retryable = True


class EndpointNotFound(ApiError):
    """404 on create: the API URL is wrong (PICWISH_API_URL), not a task that went missing."""

    text_key = "service_unavailable"


class PayloadTooLarge(ApiError):  # 413
    text_key = "image_too_large"


class RateLimited(ApiError):  # 429: another client shares the key; the scheduler pauses
    text_key = "busy"
    retryable = True
    retry_after: float = 0.0  # seconds the server asked for (Retry-After); no retry comes sooner


class ServerError(ApiError):  # 5xx
    text_key = "service_trouble"
    retryable = True


class MalformedResponse(ApiError):
    """The body was not the documented JSON."""

    text_key = "service_trouble"
    retryable = True


class NetworkError(ApiError):
    """Connection refused or reset, DNS, TLS: the request may not have arrived."""

    text_key = "service_trouble"
    retryable = True


class ApiTimeout(ApiError):
    text_key = "too_slow"
    retryable = True


class ResultExpired(ApiError):
    """The result URL no longer serves the image (they live one hour)."""

    text_key = "api_failed"
    retryable = True


class UnsafeResultUrl(ApiError):
    """A result URL we refuse to fetch: not https and not on the configured API host."""

    text_key = "service_bad_answer"


class TaskFailed(ApiError):
    """``data.state`` < 0. The text and retry policy come from the state."""


# data.state -> (text key, worth retrying)
TASK_STATES: dict[int, tuple[str, bool]] = {
    -17: ("api_failed", False),
    -16: ("content_refused", False),
    -15: ("service_trouble", True),
    -14: ("no_face", False),
    -13: ("service_trouble", True),
    -11: ("no_face", False),
    -10: ("content_refused", False),
    -9: ("service_trouble", True),
    -8: ("too_slow", False),
    -7: ("corrupt_image", False),
    -5: ("image_too_large", False),
    -3: ("api_failed", False),
    -2: ("service_trouble", True),
    -1: ("api_failed", False),
}


#: Failed states that the same image will fail with again: remembered, so a re-sent photo costs nothing.
FINAL_STATES = frozenset({-16, -14, -11, -10, -7})


def task_failed(state: int, detail: str = "") -> TaskFailed:
    """Build the error for a failed task state, with the state's text and retry policy."""
    text_key, retryable = TASK_STATES.get(state, ("api_failed", False))
    err = TaskFailed(detail or f"task failed with state {state}", state=state)
    err.text_key = text_key
    err.retryable = retryable
    return err


_BY_HTTP_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    429: RateLimited,
}


def for_http_status(status: int, detail: str = "") -> ApiError:
    """The error for a non-200 HTTP status or a non-200 ``status`` field in the body."""
    cls = _BY_HTTP_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(detail or f"HTTP {status}", http_status=status)


# --- our own limits ----------------------------------------------------------------------------------
class Refused(CutoutError):
    """Admission control said no (per-user limits, shutting down). Nothing was queued."""

    text_key = "busy"

    def __init__(self, text_key: str, retry_after: float = 0.0) -> None:
        super().__init__(text_key)
        self.text_key = text_key
        self.retry_after = retry_after


# --- links -------------------------------------------------------------------------------------------
#: Failed states of a task made from a link: the service could not fetch or read what the link gave.
_LINK_TEXTS = {-3: "link_unreachable", -5: "link_too_large", -7: "link_not_image"}


def for_link(error: CutoutError) -> CutoutError:
    """The same error, told as being about the user's link where the state says the link was the trouble."""
    if isinstance(error, TaskFailed) and error.state in _LINK_TEXTS:
        error.text_key = _LINK_TEXTS[error.state]
    return error


# --- the chat --------------------------------------------------------------------------------------
class ChatRestricted(CutoutError):
    """The chat does not let the bot send what the answer needs (a group's permissions for members)."""

    text_key = "chat_restricted"


class StickersRefused(ChatRestricted):
    """The chat refuses stickers: the rest of the answer still goes out, and later ones skip the sticker."""
