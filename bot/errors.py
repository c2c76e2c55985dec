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
    #: The same image would fail so again (no face, refused content): remembered, so it costs nothing twice.
    final: bool = False
    #: The text to show instead when the picture came as a link (the trouble was fetching it).
    link_text_key: str | None = None
    #: The service itself is down or unreachable (not this image): past the retries, photos wait for it.
    outage: bool = False

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
    outage = True


class MalformedResponse(ApiError):
    """The body was not the documented JSON (a proxy's error page, in an outage)."""

    text_key = "service_trouble"
    retryable = True
    outage = True


class NetworkError(ApiError):
    """Connection refused or reset, DNS, TLS: the request may not have arrived."""

    text_key = "service_trouble"
    retryable = True
    outage = True


class ApiTimeout(ApiError):
    text_key = "too_slow"
    retryable = True
    outage = True


class ResultExpired(ApiError):
    """The result URL no longer serves the image (they live one hour)."""

    text_key = "api_failed"
    retryable = True


class UnsafeResultUrl(ApiError):
    """A result URL we refuse to fetch: not https and not on the configured API host."""

    text_key = "service_bad_answer"


class TaskFailed(ApiError):
    """The service tried and failed for this image; its text, retry policy and finality are set by the
    engine that raised it (the PicWish client maps its ``data.state`` codes, which stay inside it)."""

    def __init__(
        self,
        detail: str = "",
        *,
        text_key: str = "api_failed",
        retryable: bool = False,
        final: bool = False,
        link_text_key: str | None = None,
        state: int | None = None,
    ) -> None:
        super().__init__(detail, state=state)
        self.text_key = text_key
        self.retryable = retryable
        self.final = final
        self.link_text_key = link_text_key


class KnownFailure(CutoutError):
    """This image failed for good before (its text remembered): answered again at no cost."""

    final = True

    def __init__(self, text_key: str) -> None:
        super().__init__(f"{text_key} remembered for this image")
        self.text_key = text_key


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


# --- the chat --------------------------------------------------------------------------------------
class ChatUnreachable(CutoutError):
    """The chat side (Telegram) cannot be reached now, past its own retries: the answer waits until it can."""

    retryable = True

class ChatRestricted(CutoutError):
    """The chat does not let the bot send what the answer needs (a group's permissions for members)."""

    text_key = "chat_restricted"


class StickersRefused(ChatRestricted):
    """The chat refuses stickers: the rest of the answer still goes out, and later ones skip the sticker."""


# --- any engine --------------------------------------------------------------------------------------
class NoFace(CutoutError):
    """No face in the picture (or nothing left of it after the cutout). Engine-neutral."""

    text_key = "no_face"
    final = True


class LinkUnsupported(CutoutError):
    """A link was sent to an engine that cannot fetch it (the offline engine reads only uploaded bytes)."""

    text_key = "link_unsupported"


class EngineMissing(Exception):
    """The offline engine's packages are not installed. The message is one line: what is missing and the fix.

    Not a :class:`CutoutError`: it stops start-up, it never ends a job."""
