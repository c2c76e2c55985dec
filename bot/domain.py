"""The values a cutout job is made of: what the user chose, and where a job stands.

One :class:`CutoutOptions` travels with a job from the handler that accepted it to the API request
and to rendering. Only ``crop`` and ``output``'s format are API parameters; the outline and the
print-ready prop are rendered here from the API's full-resolution result, so changing them costs no
API call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class Output(StrEnum):
    """What comes back for a photo."""

    STICKER_AND_PNG = "sticker+png"
    STICKER = "sticker"
    PNG = "png"
    JPG = "jpg"  # the API's JPG on white, sent as a photo: no sticker (a JPG has no transparency)

    @property
    def api_format(self) -> str:
        return "jpg" if self is Output.JPG else "png"


class Size(StrEnum):
    """``print``: every answer also carries a full-resolution, print-ready prop (prop mode)."""

    STICKER = "sticker"
    PRINT = "print"


class Part(StrEnum):
    """One message of an answer, in the order they are sent."""

    STICKER = "sticker"
    PNG = "png"
    JPG = "jpg"
    PROP = "prop"


@dataclass(frozen=True)
class CutoutOptions:
    """How one photo is cut out and answered."""

    crop: bool = True  # tight to the head (API crop=1), or the photo's whole canvas (crop=0)
    output: Output = Output.STICKER_AND_PNG
    outline: bool = False  # a white sticker outline along the cutout's edge
    size: Size = Size.STICKER

    @property
    def api_key(self) -> str:
        """The API parameters, as part of a cache key: equal keys mean the same API result."""
        return f"crop={int(self.crop)};format={self.output.api_format}"

    @property
    def parts(self) -> tuple[Part, ...]:
        """The messages that answer a photo, in order."""
        main = {
            Output.STICKER_AND_PNG: (Part.STICKER, Part.PNG),
            Output.STICKER: (Part.STICKER,),
            Output.PNG: (Part.PNG,),
            Output.JPG: (Part.JPG,),
        }[self.output]
        return (*main, Part.PROP) if self.size is Size.PRINT else main

    @property
    def needs_sticker(self) -> bool:
        """Whether the answer carries a 512 px render (the sticker, its PNG)."""
        return Part.STICKER in self.parts or Part.PNG in self.parts

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> CutoutOptions:
        """Options stored with a job; missing or unknown values fall back to the defaults."""
        if not raw:
            return cls()
        try:
            values: dict[str, Any] = json.loads(raw)
            return cls(
                crop=bool(values.get("crop", True)),
                output=Output(values.get("output", Output.STICKER_AND_PNG)),
                outline=bool(values.get("outline", False)),
                size=Size(values.get("size", Size.STICKER)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()

    def with_(self, **changes: Any) -> CutoutOptions:
        return replace(self, **changes)


class JobState(StrEnum):
    """accepted → queued → working → delivering → done, or failed from any of them.

    ``delivering``: some parts of the answer went out (``JobRecord.parts_sent``); a restart sends the rest.
    """

    ACCEPTED = "accepted"
    QUEUED = "queued"
    WORKING = "working"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"


OPEN_STATES = (JobState.ACCEPTED, JobState.QUEUED, JobState.WORKING, JobState.DELIVERING)

#: Emoji a user can give their stickers in a pack (the first is the default).
PACK_EMOJI = ("🙂", "😎", "😂", "😍", "🎉", "🔥", "👍", "❤️")


@dataclass(frozen=True)
class ChatSettings:
    """What a chat chose in /settings and /props: a user's own in private, the group's in a group."""

    chat_id: int
    options: CutoutOptions = field(default_factory=CutoutOptions)
    emoji: str = PACK_EMOJI[0]
    props_since: float | None = None  # prop mode on since then (the time /zip counts from)
    zip_since: float | None = None  # the last /zip
    no_stickers: bool = False  # the chat refused a sticker (a group that forbids them): send the rest
    language: str | None = None  # chosen with /lang or /settings; None: the asker's Telegram language

    @property
    def props_on(self) -> bool:
        return self.options.size is Size.PRINT

    def with_props(self, on: bool, now: float) -> ChatSettings:
        """Prop mode switched on or off; switching it on starts what the next /zip collects."""
        since = now if on and not self.props_on else self.props_since
        size = Size.PRINT if on else Size.STICKER
        return replace(self, options=self.options.with_(size=size), props_since=since)

    @property
    def zip_from(self) -> float:
        """Props made since this time go into the next /zip."""
        return max(self.props_since or 0.0, self.zip_since or 0.0)
