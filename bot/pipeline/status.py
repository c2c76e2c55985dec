"""Status messages: what a photo (or album) that waits shows while it waits, kept in step with the line.

A photo that starts at once gets no status message: a chat action says the bot is at work, and the
answer follows. A status message appears only once a photo waits (in line for a second, or still
being fetched after two) and changes only when what it says changes, each message at most once per
interval. The photos of a batch (an album, the links of one message) share one, which shows how many
are done and where the next one in line stands (that place alone is edited more rarely, and never
back while the count stays: the next one being made, the place of the one after it waits for the
count); so do the photos a user sends one by one in a chat while an earlier one is not answered yet
(ten photos in a row make one message that counts, not ten that come and go). Posting it is a
``NOTICE`` in Telegram's budget; edits are ``FEEDBACK``, sent only with spare capacity, the latest
replacing one still waiting (see ``bot/telegram_limits.py``), so status messages never crowd out
answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from bot.storage import JobRecord

#: Edits started per tick at most (Telegram's limiter caps their share of its budget in any case).
EDITS_PER_TICK = 10
#: A photo in line this long gets a status message (one that starts sooner needs none).
POST_WHEN_QUEUED = 1.0
#: A photo still being fetched or checked this long gets one too.
POST_WHEN_RECEIVED = 2.0
#: ... sooner when others already wait (it will wait too: its user hears of it before 3 s have passed,
#: even while the bot is still taking in a burst of other photos).
POST_WHEN_RECEIVED_BEHIND = 1.0
#: A message that said "received" shows the photos' place this soon after (Telegram: ~1/s per chat).
FIRST_PLACE_AFTER = 1.0
#: A message that counts photos done shows where the next one stands; that place alone is edited at
#: most this often.
PLACE_ONLY_AFTER = 10.0


@dataclass(frozen=True)
class Status:
    """What a status message says: ``received``, ``queued`` (with ``position``), ``outage`` (waiting for
    the API to come back), ``working``, or for a batch ``progress`` (``done`` of ``total`` finished);
    a batch with some done and some still in line is ``queued`` with ``done`` counted."""

    kind: str
    position: int | None = None
    done: int = 0
    total: int = 1


RECEIVED = Status("received")


@dataclass
class _Message:
    """One status message (once posted) and the open jobs it speaks for."""

    batch: bool  # an album or a message's links: shared from the start, counted as one
    since: float  # when its first photo arrived
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    members: dict[str, Status] = field(default_factory=dict)
    message_id: int | None = None
    queued_since: float | None = None  # when one of its photos began to wait in line
    finished: int = 0
    shown: Status = RECEIVED
    last_edit: float = 0.0
    busy: bool = False  # posting it, or an edit on its way
    retired: bool = False  # its photos are answered: a post still on its way is deleted on arrival
    will_wait: bool = False  # it came while others were in line: it waits, whatever its intake takes

    @property
    def job(self) -> JobRecord:
        """The job whose chat (and status_message_id) the message's calls use: one not answered yet if
        any, so a message posted late replies to a photo it speaks for."""
        for job_id in self.members:
            return self.jobs[job_id]
        return next(iter(self.jobs.values()))

    @property
    def wanted(self) -> Status:
        statuses = list(self.members.values())
        total = len(statuses) + self.finished
        if not self.batch and total <= 1:  # one photo: what it is at
            return statuses[0] if statuses else self.shown
        if any(s.kind == "outage" for s in statuses):
            return Status("outage", total=total)
        positions = [s.position for s in statuses if s.position is not None]
        if self.finished and positions:  # how many are done, and where the next one in line stands
            return Status("queued", position=min(positions), done=self.finished, total=total)
        if self.finished or any(s.kind == "working" for s in statuses):
            return Status("progress", done=self.finished, total=total)
        if positions:
            return Status("queued", position=min(positions), total=total)
        return Status("received", total=total)

    def worth_posting(self, now: float) -> bool:
        """Whether its photos wait long enough to need a status message."""
        kinds = {s.kind for s in self.members.values()}
        if self.will_wait and kinds & {"queued", "outage"}:
            return True
        if self.queued_since is not None and now - self.queued_since >= POST_WHEN_QUEUED:
            return True
        wait = POST_WHEN_RECEIVED_BEHIND if self.will_wait else POST_WHEN_RECEIVED
        return kinds == {"received"} and now - self.since >= wait


class StatusBoard:
    """Every status message in use, keyed by batch, or by chat and user for photos sent one by one."""

    def __init__(
        self,
        *,
        post: Callable[[JobRecord, Status, Callable[[], bool]], Awaitable[int | None]],
        show: Callable[[JobRecord, Status, bool], Awaitable[None]],
        posted: Callable[[list[JobRecord], int], None],
        retire: Callable[[JobRecord], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Future[None]],
    ) -> None:
        self._post = post  # sends a status message while it is wanted, returns its id (None: not sent)
        self._show = show  # edits one (urgent: it shows the photos' place for the first time)
        self._posted = posted  # records a status message's id on the jobs it speaks for
        self._retire = retire  # deletes one
        self._spawn = spawn
        self._messages: dict[str, _Message] = {}
        self._keys: dict[str, str] = {}  # job id -> its message's key, while the job is tracked
        #: What a photo waiting in line is shown: ``queued`` (its place), or ``outage`` while the API is down.
        self.line_status = "queued"

    def _key(self, job: JobRecord) -> str:
        return self._keys.get(job.id) or job.batch_id or job.id

    def track(self, job: JobRecord) -> None:
        """Speak for ``job`` once it waits: on its batch's message, on the message of its user's photos
        still open in its chat, or (the first of them) on a message of its own."""
        if job.batch_id is not None:
            key = job.batch_id
        elif job.status_message_id is not None:  # posted before a restart: its photos share it again
            key = f"message:{job.chat_id}:{job.status_message_id}"
        else:
            key = f"user:{job.chat_id}:{job.user_id}"
        self._keys[job.id] = key
        message = self._messages.get(key)
        if message is None:
            message = self._messages[key] = _Message(batch=job.batch_id is not None, since=time.monotonic())
        message.jobs[job.id] = job
        message.members.setdefault(job.id, RECEIVED)
        if message.message_id is None:
            message.message_id = job.status_message_id  # posted before a restart
        elif job.status_message_id != message.message_id:
            self._posted([job], message.message_id)  # a later photo of a batch that has one

    def want(self, job: JobRecord, kind: str, position: int | None = None) -> None:
        message = self._messages.get(self._key(job))
        if message is not None and job.id in message.members:
            if kind == "queued" and self.line_status == "outage":
                kind, position = "outage", None  # told once; its place means nothing until the API is back
            message.members[job.id] = Status(kind, position)
            if kind in ("queued", "outage"):
                if message.queued_since is None:
                    message.queued_since = time.monotonic()
                if message.will_wait and message.message_id is None and not message.busy:
                    self._post_now(message)
            elif not any(s.kind in ("queued", "outage") for s in message.members.values()):
                message.queued_since = None

    def will_wait(self, job: JobRecord) -> None:
        """``job`` came while others wait: it gets a status message saying its place as soon as it is in
        line (or saying it was received, if fetching it takes a while)."""
        message = self._messages.get(self._key(job))
        if message is not None:
            message.will_wait = True

    def has_message(self, job: JobRecord) -> bool:
        """Whether ``job`` has a status message (posted, or on its way)."""
        message = self._messages.get(self._key(job))
        return message is not None and (message.message_id is not None or message.busy)

    def alone(self, job: JobRecord) -> bool:
        """Whether ``job``'s status message has only ever spoken for ``job`` (so a failure may take it
        over; a shared one stays with the other photos)."""
        message = self._messages.get(self._key(job))
        return (
            message is not None and not message.batch and message.finished == 0 and list(message.members) == [job.id]
        )

    def settle(self, job: JobRecord) -> bool:
        """``job`` is being answered: stop speaking for it. True when its status message now speaks
        for nobody and the caller retires it; one still being posted is dropped unsent if it is
        still waiting for its turn in Telegram's budget, else deleted on arrival (by the board
        alone: deleted twice, the second call is a wasted one). Edits still waiting never land after
        the answer's: Telegram's limiter keeps calls on one message in order and lets the last
        replace them."""
        message = self._messages.get(self._key(job))
        if message is None or message.members.pop(job.id, None) is None:
            return False
        message.finished += 1
        if message.members:
            return False
        del self._messages[self._key(job)]
        message.retired = True
        return not (message.busy and message.message_id is None)

    def forget(self, job: JobRecord) -> None:
        key = self._key(job)
        self._keys.pop(job.id, None)
        message = self._messages.get(key)
        if message is not None:
            message.members.pop(job.id, None)
            message.jobs.pop(job.id, None)
            if not message.members:
                del self._messages[key]
                message.retired = True

    async def run(self, positions: Callable[[], dict[JobRecord, int]], tick: float = 0.5) -> None:
        """Keep status messages in step with the line, each edited at most once per interval."""
        while True:
            await asyncio.sleep(tick)
            for job, position in positions().items():
                self.want(job, "queued", position)
            self.refresh(time.monotonic())

    def refresh(self, now: float) -> None:
        """Post the status messages now worth posting; edit those whose text is out of date."""
        edits = 0
        for message in list(self._messages.values()):
            if message.busy or not message.jobs:
                continue
            wanted = message.wanted
            if message.message_id is None:
                if message.worth_posting(now):
                    self._post_now(message)
                continue
            if wanted == message.shown or _next_one_started(message.shown, wanted):
                continue
            # A message that said "received" and now shows the photos' place: the user learns where they
            # stand, as urgent as a first status message (and as soon as the chat may take an edit).
            urgent = message.shown.kind == "received" and wanted.kind in ("queued", "outage")
            interval = FIRST_PLACE_AFTER if urgent else edit_interval(message.job, wanted)
            if wanted.done and wanted == replace(message.shown, position=wanted.position):
                # Only the next photo's place moved: at QPS 2 it moves with every photo made, and the
                # count of those done (edited as it changes) already says the line is moving.
                interval = max(interval, PLACE_ONLY_AFTER)
            if now - message.last_edit < interval:
                continue
            message.busy = True
            message.shown = wanted
            self._spawn(self._edit(message, wanted, urgent))
            edits += 1
            if edits >= EDITS_PER_TICK:
                break

    def _post_now(self, message: _Message) -> None:
        message.busy = True
        message.shown = message.wanted
        self._spawn(self._post_one(message, message.shown))

    async def _post_one(self, message: _Message, status: Status) -> None:
        try:
            message_id = await self._post(message.job, status, lambda: not message.retired)
        finally:
            message.busy = False
            message.last_edit = time.monotonic()
        if message_id is None:
            return
        message.message_id = message_id
        self._posted(list(message.jobs.values()), message_id)
        if message.retired:  # answered while it was on its way: it must not stay behind
            await self._retire(message.job)

    async def _edit(self, message: _Message, status: Status, urgent: bool) -> None:
        try:
            await self._show(message.job, status, urgent)
        finally:
            message.busy = False
            # Counted from when the edit is done: Telegram never sees two closer than the interval,
            # however long the rate limiter held this one back.
            message.last_edit = time.monotonic()


def _next_one_started(shown: Status, wanted: Status) -> bool:
    """Whether only "the next one in line" changed, to the photo after it, the one shown having left the
    line to be made: its place would jump back with the count unchanged. It shows with the new count."""
    return (
        wanted.kind == shown.kind == "queued"
        and wanted.done == shown.done > 0
        and (wanted.position or 0) > (shown.position or 0)
    )


def edit_interval(job: JobRecord, wanted: Status) -> float:
    """Seconds between edits of one status message: 2 s near the front, rarer far back and in groups."""
    position = wanted.position or 0
    interval = 2.0 if wanted.kind != "queued" or position <= 5 else 5.0 if position <= 20 else 10.0
    return interval if job.is_private else max(interval, 6.0)
