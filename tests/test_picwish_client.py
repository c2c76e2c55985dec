"""The PicWish client against a scripted API behind ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from bot import errors
from bot.backends import picwish
from bot.backends.base import CutoutBackend, CutoutRequest
from bot.backends.picwish import FINAL_STATES, TASK_STATES, TASKS_PATH, PicWishClient, TaskResult
from bot.budget import LocalBudget, Reservation
from tests.redis_server import free_port
from tests.standins.picwish_api import FakePicWish
from tests.test_budget import FakeClock

KEY = "SECRET-KEY-123"
BASE = "https://techhk.aoscdn.com"
RESULT_URL = "https://oss.example.com/results/abc.png?Expires=1&Signature=xyz"
PNG = b"\x89PNG\r\n\x1a\n" + b"cutout" * 10
PHOTO = b"\xff\xd8\xff\xe0" + b"photo" * 10

Reply = Callable[[httpx.Request], httpx.Response]


# --- a scripted API --------------------------------------------------------------------------------
def answer(data: dict[str, Any] | None = None, *, status: Any = 200, http: int = 200, **extra: Any) -> Reply:
    payload: dict[str, Any] = {"status": status, "message": extra.pop("message", "success")}
    if data is not None:
        payload["data"] = data
    headers = extra.pop("headers", None)

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(http, json=payload, headers=headers)

    return reply


def done(task_id: str = "t1", image: str = RESULT_URL) -> Reply:
    return answer({"task_id": task_id, "state": 1, "progress": 100, "image": image, "mask": image + "&m"})


def processing(task_id: str = "t1", state: int = 4) -> Reply:
    return answer({"task_id": task_id, "state": state, "progress": 40})


def raw(http: int, content: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(http, content=content, headers=headers)

    return reply


def raises(exc_type: type[httpx.RequestError]) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        # Hostile on purpose: the httpx error's own text carries the request headers.
        raise exc_type(f"failed with headers {dict(request.headers)}", request=request)

    return reply


class FakeApi:
    """Answers creates, queries and downloads from queues, and records what it was sent."""

    def __init__(self) -> None:
        self.creates: list[Reply] = []
        self.queries: list[Reply] = []
        self.query_forever: Reply | None = None
        self.files: dict[str, list[Reply]] = {}
        self.requests: list[httpx.Request] = []
        self.events: list[str] = []  # shared with the budget: what happened, in order

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == TASKS_PATH:
            kind, queue = "create", self.creates
        elif request.method == "GET" and path.startswith(TASKS_PATH + "/"):
            kind, queue = "query", self.queries
        else:
            kind, queue = "download", self.files.setdefault(str(request.url), [])
        self.events.append(kind)
        if queue:
            return queue.pop(0)(request)
        if kind == "query" and self.query_forever is not None:
            return self.query_forever(request)
        raise AssertionError(f"unexpected {request.method} {request.url}")

    def serve(self, url: str, *replies: Reply) -> None:
        self.files.setdefault(url, []).extend(replies)

    def sent(self, kind: str) -> list[httpx.Request]:
        return [r for r, e in zip(self.requests, self.events_of_requests(), strict=True) if e == kind]

    def events_of_requests(self) -> list[str]:
        return [e for e in self.events if e != "acquire" and not e.startswith("pause")]


class FakeBudget:
    """Grants every booking and start at once; records starts and pauses among the API's events."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.acquired = 0
        self.pauses: list[float] = []

    async def reserve(self) -> Reservation:
        return Reservation(self, "booked")

    async def acquire(self, reservation: Reservation | None = None) -> Reservation:
        self.acquired += 1
        self.events.append("acquire")
        return reservation or Reservation(self, "started")

    async def sent(self, reservation: Reservation) -> None:
        self.events.append("sent")

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.events.append(f"pause {seconds}")


def form(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """The multipart body as {name: (filename, content type, bytes)}."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + request.content)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


def fields(request: httpx.Request) -> dict[str, str]:
    return {name: data.decode() for name, (filename, _, data) in form(request).items() if filename is None}


def assert_one_acquire_right_before_each_api_request(api: FakeApi, budget: FakeBudget) -> None:
    api_requests = 0
    for i, event in enumerate(api.events):
        if event in ("create", "query"):
            api_requests += 1
            assert i > 0 and api.events[i - 1] == "acquire", api.events
        if event == "download":
            assert i == 0 or api.events[i - 1] != "acquire", api.events
    assert budget.acquired == api_requests


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def budget(api: FakeApi) -> FakeBudget:
    return FakeBudget(api.events)


MakeClient = Callable[..., PicWishClient]


@pytest.fixture
async def make_client(api: FakeApi, budget: FakeBudget) -> AsyncIterator[MakeClient]:
    clients: list[PicWishClient] = []

    def make(**overrides: Any) -> PicWishClient:
        options: dict[str, Any] = {
            "base_url": BASE,
            "budget": budget,
            "poll_interval": 0.01,
            "max_wait": 2.0,
            "transport": httpx.MockTransport(api.handler),
        }
        options.update(overrides)
        client = PicWishClient(KEY, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: MakeClient) -> PicWishClient:
    return make_client()


def photo(**options: Any) -> CutoutRequest:
    return CutoutRequest(image=PHOTO, filename="me.jpg", mime="image/jpeg", **options)


# --- the happy paths -------------------------------------------------------------------------------
async def test_sync_cutout_sends_one_create_with_the_file_and_returns_the_result(
    client: PicWishClient, api: FakeApi, budget: FakeBudget
) -> None:
    api.creates.append(done())
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout(photo()) == PNG

    assert api.events_of_requests() == ["create", "download"]
    create, download = api.requests
    assert create.headers["X-API-KEY"] == KEY
    assert create.headers["Content-Type"].startswith("multipart/form-data")
    assert fields(create) == {"sync": "1", "crop": "1", "output_format": "png"}
    assert form(create)["image_file"] == ("me.jpg", "image/jpeg", PHOTO)
    assert create.extensions["timeout"]["read"] >= 180  # a sync create may take up to 180 s
    assert "X-API-KEY" not in download.headers  # the result host never sees the key
    assert_one_acquire_right_before_each_api_request(api, budget)


async def test_options_reach_the_form(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(done())
    api.serve(RESULT_URL, raw(200, PNG))

    await client.cutout(photo(crop=False, output_format="jpg"))

    assert fields(api.requests[0]) == {"sync": "1", "crop": "0", "output_format": "jpg"}


@pytest.mark.parametrize("state", [0, 2, 3, 4, 5])
async def test_sync_answer_still_processing_is_polled_until_done(
    client: PicWishClient, api: FakeApi, budget: FakeBudget, state: int
) -> None:
    api.creates.append(processing(state=state))
    api.queries += [processing(state=state), done()]
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout(photo()) == PNG

    assert api.events_of_requests() == ["create", "query", "query", "download"]
    assert all(r.url.path == f"{TASKS_PATH}/t1" for r in api.sent("query"))
    assert_one_acquire_right_before_each_api_request(api, budget)


async def test_state_one_without_image_is_polled(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(answer({"task_id": "t1", "state": 1, "image": ""}))
    api.queries += [answer({"task_id": "t1", "state": 1}), done()]
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout(photo()) == PNG
    assert api.events_of_requests() == ["create", "query", "query", "download"]


async def test_async_flow_creates_with_sync_0_then_polls(
    client: PicWishClient, api: FakeApi, budget: FakeBudget
) -> None:
    api.creates.append(answer({"task_id": "t9"}))  # the async create answers with the id only
    api.queries += [processing("t9", 0), processing("t9", 4), done("t9")]
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout_async(photo()) == PNG

    create = api.requests[0]
    assert fields(create)["sync"] == "0"
    assert form(create)["image_file"] == ("me.jpg", "image/jpeg", PHOTO)
    assert create.extensions["timeout"]["read"] < 180  # no long hold without sync
    assert api.events_of_requests() == ["create", "query", "query", "query", "download"]
    assert_one_acquire_right_before_each_api_request(api, budget)


async def test_prefer_async_request_uses_the_async_flow(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(answer({"task_id": "t9"}))
    api.queries.append(done("t9"))
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout(photo(prefer_async=True)) == PNG
    assert fields(api.requests[0])["sync"] == "0"


async def test_create_with_image_url_sends_a_plain_multipart_field(
    client: PicWishClient, api: FakeApi
) -> None:
    api.creates.append(answer({"task_id": "t2"}))

    task = await client.create_task(image_url="https://example.com/me.jpg", sync=False)

    assert task == TaskResult(task_id="t2", state=0, progress=None, image=None, mask=None)
    assert form(api.requests[0]) == {
        "sync": (None, "text/plain", b"0"),
        "crop": (None, "text/plain", b"1"),
        "output_format": (None, "text/plain", b"png"),
        "image_url": (None, "text/plain", b"https://example.com/me.jpg"),
    }


async def test_create_needs_exactly_one_source(client: PicWishClient, api: FakeApi) -> None:
    with pytest.raises(ValueError):
        await client.create_task()
    with pytest.raises(ValueError):
        await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"), image_url="https://x/a.jpg")
    assert api.requests == []


async def test_query_reads_progress_image_and_mask(client: PicWishClient, api: FakeApi) -> None:
    api.queries.append(done("t3"))

    task = await client.query_task("t3")

    assert task == TaskResult("t3", 1, 100, RESULT_URL, RESULT_URL + "&m")
    assert task.done


async def test_client_is_a_cutout_backend(client: PicWishClient) -> None:
    backend: CutoutBackend = client
    assert backend.name == "picwish"


# --- API failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("http", "error", "retryable", "text_key"),
    [
        (400, errors.BadRequest, False, "api_bad_request"),
        (401, errors.Unauthorized, False, "service_unavailable"),
        (404, errors.EndpointNotFound, False, "service_unavailable"),
        (413, errors.PayloadTooLarge, False, "image_too_large"),
        (429, errors.RateLimited, True, "busy"),
        (500, errors.ServerError, True, "service_trouble"),
        (502, errors.ServerError, True, "service_trouble"),
    ],
)
async def test_http_status_maps_to_error(
    client: PicWishClient,
    api: FakeApi,
    budget: FakeBudget,
    http: int,
    error: type[errors.ApiError],
    retryable: bool,
    text_key: str,
) -> None:
    api.creates.append(answer(status=http, http=http, message="nope"))

    with pytest.raises(error) as caught:
        await client.cutout(photo())

    assert type(caught.value) is error
    assert caught.value.http_status == http
    assert (caught.value.retryable, caught.value.text_key) == (retryable, text_key)
    assert f"HTTP {http}" in str(caught.value) and "nope" in str(caught.value)
    assert api.events_of_requests() == ["create"]  # no retry here: the caller decides
    assert budget.pauses == ([pytest.approx(1.0)] if http == 429 else [])


async def test_http_error_with_a_non_json_body_still_maps_by_status(
    client: PicWishClient, api: FakeApi
) -> None:
    api.creates.append(raw(503, b"<html>Service Unavailable</html>"))

    with pytest.raises(errors.ServerError, match="HTTP 503"):
        await client.cutout(photo())


@pytest.mark.parametrize(("header", "pause"), [("7", 7.0), ("0.5", 0.5), ("3600", 60.0), ("soon", 1.0)])
async def test_429_pauses_the_budget_honouring_retry_after(
    client: PicWishClient, api: FakeApi, budget: FakeBudget, header: str, pause: float
) -> None:
    api.creates.append(answer(status=429, http=429, headers={"Retry-After": header}))

    with pytest.raises(errors.RateLimited):
        await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"))

    assert budget.pauses == [pytest.approx(pause)]
    assert api.events == ["acquire", "create", f"pause {budget.pauses[0]}"]


async def test_429_retry_after_as_http_date(client: PicWishClient, api: FakeApi, budget: FakeBudget) -> None:
    api.creates.append(answer(status=429, http=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))

    with pytest.raises(errors.RateLimited):
        await client.cutout(photo())

    assert budget.pauses == [0.0]  # a date in the past: no extra wait


async def test_429_in_the_body_of_an_http_200_pauses_too(
    client: PicWishClient, api: FakeApi, budget: FakeBudget
) -> None:
    api.creates.append(answer(status=429))

    with pytest.raises(errors.RateLimited):
        await client.cutout(photo())

    assert budget.pauses == [pytest.approx(1.0)]


async def test_429_without_budget_just_raises(make_client: MakeClient, api: FakeApi) -> None:
    api.creates.append(answer(status=429, http=429))

    with pytest.raises(errors.RateLimited):
        await make_client(budget=None).cutout(photo())


@pytest.mark.parametrize(("headers", "resumed_at"), [({"Retry-After": "7"}, 7.0), ({}, 1.0)])
async def test_after_a_429_the_next_request_waits_for_retry_after_or_else_one_second(
    make_client: MakeClient, api: FakeApi, headers: dict[str, str], resumed_at: float
) -> None:
    clock = FakeClock()
    arrived: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrived.append(clock.now)
        return api.handler(request)

    budget = LocalBudget(2, clock=clock, sleep=clock.sleep)
    client = make_client(budget=budget, transport=httpx.MockTransport(handler))
    api.creates.extend([answer(status=429, http=429, headers=headers), done()])
    api.serve(RESULT_URL, raw(200, PNG))

    with pytest.raises(errors.RateLimited):
        await client.cutout(photo())
    assert await client.cutout(photo()) == PNG

    # The refused create, the next create, its download (no API request: no wait).
    assert arrived == [0.0, pytest.approx(resumed_at), pytest.approx(resumed_at)]


# --- the QPS start, taken on the wire ----------------------------------------------------------------
class WireBudget:
    """Grants everything at once and records bookings, starts and sends; ``on_start`` runs in acquire()."""

    def __init__(self, on_start: Callable[[], Awaitable[None]] | None = None) -> None:
        self.events: list[str] = []
        self._on_start = on_start

    async def reserve(self) -> Reservation:
        self.events.append("reserve")
        return Reservation(self, "booked")

    async def acquire(self, reservation: Reservation | None = None) -> Reservation:
        if self._on_start is not None:
            await self._on_start()
        self.events.append("acquire")
        return reservation or Reservation(self, "started")

    async def sent(self, reservation: Reservation) -> None:
        self.events.append("sent")

    async def pause(self, seconds: float) -> None:
        self.events.append(f"pause {seconds}")


class Refused(Exception):
    pass


async def test_the_start_is_taken_with_the_connection_open_before_any_byte_leaves() -> None:
    connected, hung_up = asyncio.Event(), asyncio.Event()
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        received.extend(await reader.read())  # until the client hangs up
        writer.close()
        hung_up.set()

    async def refuse_once_connected() -> None:
        # Times out, failing the test, if the start were taken before the connection was open.
        await asyncio.wait_for(connected.wait(), timeout=5)
        raise Refused

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        budget = WireBudget(on_start=refuse_once_connected)
        async with PicWishClient(KEY, base_url=f"http://127.0.0.1:{port}", budget=budget) as client:
            with pytest.raises(Refused):
                await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"))
        await asyncio.wait_for(hung_up.wait(), timeout=5)
    finally:
        server.close()
        await server.wait_closed()
    assert bytes(received) == b"", "nothing of the request leaves before its start"


async def test_a_request_that_never_connects_spends_no_start() -> None:
    budget = WireBudget()
    async with PicWishClient(KEY, base_url=f"http://127.0.0.1:{free_port()}", budget=budget) as client:
        with pytest.raises(errors.NetworkError):
            await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"))
    assert budget.events == ["reserve"]


async def test_each_api_request_is_booked_started_on_the_wire_and_reported_sent() -> None:
    budget = WireBudget()
    with FakePicWish(KEY, qps=100) as api:
        async with PicWishClient(KEY, base_url=api.url, budget=budget) as client:
            for _ in range(2):
                await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"), sync=False)
        kinds = [(r.kind, r.status) for r in api.requests]
    assert kinds == [("create", 200), ("create", 200)]
    assert budget.events == ["reserve", "acquire", "sent"] * 2


class UntracedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport type, answering without httpcore, so without its trace events."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return httpx.Response(200, json={"status": 200, "message": "success", "data": {"task_id": "t1"}})


async def test_a_start_the_transport_never_reported_still_counts(caplog: pytest.LogCaptureFixture) -> None:
    budget = WireBudget()
    async with PicWishClient(KEY, base_url=BASE, budget=budget, transport=UntracedTransport()) as client:
        await client.create_task(image_file=("a.jpg", PHOTO, "image/jpeg"), sync=False)
    assert budget.events == ["reserve", "acquire"]
    assert "did not report an API request leaving" in caplog.text


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, errors.ServerError),
        (401, errors.Unauthorized),
        (400, errors.BadRequest),
        ("413", errors.PayloadTooLarge),
    ],
)
async def test_body_status_failure_inside_http_200(
    client: PicWishClient, api: FakeApi, status: Any, error: type[errors.ApiError]
) -> None:
    api.creates.append(
        answer({"task_id": "t1", "state": 1, "image": RESULT_URL}, status=status, message="bad")
    )

    with pytest.raises(error) as caught:
        await client.cutout(photo())

    assert caught.value.http_status == int(status)
    assert "HTTP 200" in str(caught.value) and f"status {status}" in str(caught.value)


@pytest.mark.parametrize("state", sorted(TASK_STATES))
async def test_negative_state_maps_to_the_states_text_and_retry_policy(
    client: PicWishClient, api: FakeApi, state: int
) -> None:
    api.creates.append(answer({"task_id": "t1", "state": state}))

    with pytest.raises(errors.TaskFailed) as caught:
        await client.cutout(photo())

    assert caught.value.state == state
    assert (caught.value.text_key, caught.value.retryable) == TASK_STATES[state]
    assert caught.value.final == (state in FINAL_STATES)
    assert api.events_of_requests() == ["create"]


async def test_negative_state_while_polling_fails_the_task(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(answer({"task_id": "t1"}))
    api.queries += [processing(), answer({"task_id": "t1", "state": -7})]

    with pytest.raises(errors.TaskFailed) as caught:
        await client.cutout_async(photo())

    assert (caught.value.state, caught.value.text_key, caught.value.retryable) == (-7, "corrupt_image", False)


async def test_unknown_negative_state_is_a_plain_failure(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(answer({"task_id": "t1", "state": -99}))

    with pytest.raises(errors.TaskFailed) as caught:
        await client.cutout(photo())

    assert (caught.value.text_key, caught.value.retryable) == ("api_failed", False)


@pytest.mark.parametrize(
    "reply",
    [
        raw(200, b"<html>oops</html>"),
        raw(200, b"\xff\xfe not utf-8 \xff"),
        raw(200, b"[1, 2]"),
        raw(200, b""),
        answer(),  # no data
        answer({"state": 1, "image": RESULT_URL}),  # no task_id
        answer({"task_id": "t1"}),  # a sync answer without state
        answer({"task_id": "t1", "state": "soon"}),
        answer({"task_id": "t1", "state": 1}, status=None),
        answer({"task_id": "t1", "state": 1}, status="ok"),
    ],
    ids=[
        "html",
        "not-utf8",
        "json-array",
        "empty",
        "no-data",
        "no-task-id",
        "no-state",
        "state-not-a-number",
        "no-status",
        "status-not-a-number",
    ],
)
async def test_malformed_answer(client: PicWishClient, api: FakeApi, reply: Reply) -> None:
    api.creates.append(reply)

    with pytest.raises(errors.MalformedResponse) as caught:
        await client.cutout(photo())

    assert caught.value.retryable


@pytest.mark.parametrize(
    ("exc_type", "error"),
    [
        (httpx.ReadTimeout, errors.ApiTimeout),
        (httpx.ConnectTimeout, errors.ApiTimeout),
        (httpx.WriteTimeout, errors.ApiTimeout),
        (httpx.PoolTimeout, errors.ApiTimeout),
        (httpx.ConnectError, errors.NetworkError),
        (httpx.ReadError, errors.NetworkError),  # connection reset by peer
        (httpx.RemoteProtocolError, errors.NetworkError),
    ],
)
async def test_transport_failures(
    client: PicWishClient, api: FakeApi, exc_type: type[httpx.RequestError], error: type[errors.ApiError]
) -> None:
    api.creates.append(raises(exc_type))

    with pytest.raises(error) as caught:
        await client.cutout(photo())

    assert caught.value.retryable
    assert caught.value.__context__ is None and caught.value.__cause__ is None


async def test_query_timeout_maps_to_api_timeout(client: PicWishClient, api: FakeApi) -> None:
    api.queries.append(raises(httpx.ReadTimeout))

    with pytest.raises(errors.ApiTimeout):
        await client.query_task("t1")


async def test_polling_gives_up_after_max_wait(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client(poll_interval=0.01, max_wait=0.1)
    api.creates.append(processing())
    api.query_forever = processing()

    with pytest.raises(errors.ApiTimeout) as caught:
        await client.cutout(photo())

    assert caught.value.state == 4
    assert 1 <= len(api.sent("query")) <= 11


async def test_polling_rides_out_a_few_transient_query_failures(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(processing())
    api.queries += [answer(status=500, http=500), raises(httpx.ReadError), raw(200, b"?"), done()]
    api.serve(RESULT_URL, raw(200, PNG))

    assert await client.cutout(photo()) == PNG


async def test_polling_stops_on_persistent_query_failures(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(processing())
    api.query_forever = answer(status=500, http=500)

    with pytest.raises(errors.ServerError):
        await client.cutout(photo())

    assert len(api.sent("query")) == 4


async def test_polling_stops_when_the_task_is_unknown(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(processing())
    api.queries.append(answer(status=404, http=404))

    with pytest.raises(errors.NotFound):
        await client.cutout(photo())


# --- downloads -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example.com/result.png",
        "http://127.0.0.1:9999/results/x.png",  # same host, other port
        "ftp://127.0.0.1:8765/results/x.png",
        "file:///etc/passwd",
        "/results/x.png",
        "not a url at all",
    ],
)
async def test_download_refuses_unsafe_urls(make_client: MakeClient, api: FakeApi, url: str) -> None:
    client = make_client(base_url="http://127.0.0.1:8765")

    with pytest.raises(errors.UnsafeResultUrl) as caught:
        await client.download(url)

    assert not caught.value.retryable
    assert api.requests == []


@pytest.mark.parametrize(
    "url", ["https://cdn.example.com/r.png?sig=1", "http://127.0.0.1:8765/results/x.png"]
)
async def test_download_allows_https_and_the_api_host(
    make_client: MakeClient, api: FakeApi, url: str
) -> None:
    client = make_client(base_url="http://127.0.0.1:8765")
    api.serve(url, raw(200, PNG))

    assert await client.download(url) == PNG
    assert "X-API-KEY" not in api.requests[0].headers


async def test_cutout_refuses_an_unsafe_result_url(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(done(image="http://evil.example.com/r.png"))

    with pytest.raises(errors.UnsafeResultUrl):
        await client.cutout(photo())

    assert api.events_of_requests() == ["create"]


async def test_download_follows_a_redirect_only_to_a_safe_url(client: PicWishClient, api: FakeApi) -> None:
    api.serve(RESULT_URL, raw(302, headers={"Location": "https://cdn2.example.com/r.png"}))
    api.serve("https://cdn2.example.com/r.png", raw(200, PNG))
    assert await client.download(RESULT_URL) == PNG

    api.serve(RESULT_URL, raw(302, headers={"Location": "http://169.254.169.254/latest"}))
    with pytest.raises(errors.UnsafeResultUrl):
        await client.download(RESULT_URL)


async def test_download_size_bound_from_content_length(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client(max_result_bytes=100)
    api.serve(RESULT_URL, raw(200, b"x" * 101))

    with pytest.raises(errors.ApiError) as caught:
        await client.download(RESULT_URL)

    assert type(caught.value) is errors.ApiError and not caught.value.retryable
    assert "larger than 100 bytes" in str(caught.value)


async def test_download_size_bound_while_streaming(make_client: MakeClient, api: FakeApi) -> None:
    client = make_client(max_result_bytes=100)
    sent_chunks = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent_chunks
        while True:
            sent_chunks += 1
            yield b"x" * 40

    api.serve(RESULT_URL, lambda request: httpx.Response(200, content=endless()))

    with pytest.raises(errors.ApiError, match="larger than 100 bytes"):
        await client.download(RESULT_URL)

    assert sent_chunks == 3  # stopped reading as soon as the bound was crossed


async def test_download_is_bounded_in_total_time(
    client: PicWishClient, api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picwish, "_DOWNLOAD_TOTAL_TIMEOUT", 0.05)

    async def trickle() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.01)
            yield b"x"

    api.serve(RESULT_URL, lambda request: httpx.Response(200, content=trickle()))

    with pytest.raises(errors.ApiTimeout):
        await client.download(RESULT_URL)


@pytest.mark.parametrize(
    ("exc_type", "error"), [(httpx.ReadTimeout, errors.ApiTimeout), (httpx.ReadError, errors.NetworkError)]
)
async def test_download_transport_failures(
    client: PicWishClient, api: FakeApi, exc_type: type[httpx.RequestError], error: type[errors.ApiError]
) -> None:
    api.serve(RESULT_URL, raises(exc_type))

    with pytest.raises(error):
        await client.download(RESULT_URL)


async def test_download_of_an_empty_body_is_malformed(client: PicWishClient, api: FakeApi) -> None:
    api.serve(RESULT_URL, raw(200, b""))

    with pytest.raises(errors.MalformedResponse):
        await client.download(RESULT_URL)


@pytest.mark.parametrize("http", [403, 404, 410])
async def test_download_of_an_expired_result(client: PicWishClient, api: FakeApi, http: int) -> None:
    api.serve(RESULT_URL, raw(http, b"<Error>AccessDenied</Error>"))

    with pytest.raises(errors.ResultExpired) as caught:
        await client.download(RESULT_URL)

    assert caught.value.retryable and caught.value.http_status == http


async def test_expired_result_is_queried_again_then_downloaded(
    client: PicWishClient, api: FakeApi, budget: FakeBudget
) -> None:
    fresh = "https://oss.example.com/results/abc.png?Signature=fresh"
    api.creates.append(done())
    api.serve(RESULT_URL, raw(403))
    api.queries.append(done(image=fresh))
    api.serve(fresh, raw(200, PNG))

    assert await client.cutout(photo()) == PNG

    assert api.events_of_requests() == ["create", "download", "query", "download"]
    assert_one_acquire_right_before_each_api_request(api, budget)


async def test_expired_result_of_an_unknown_task_is_not_found(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(done())
    api.serve(RESULT_URL, raw(410))
    api.queries.append(answer(status=404, http=404))

    with pytest.raises(errors.NotFound):
        await client.cutout(photo())


async def test_expired_twice_gives_up(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(done())
    api.serve(RESULT_URL, raw(404), raw(404))
    api.queries.append(done())

    with pytest.raises(errors.ResultExpired):
        await client.cutout(photo())

    assert api.events_of_requests() == ["create", "download", "query", "download"]


# --- secrets ---------------------------------------------------------------------------------------
def failure(name: str, create: Reply, *downloads: Reply, query: Reply | None = None) -> Any:
    """One failure path: the create answer, then the result URL's answers, and the query answer."""
    return pytest.param(create, list(downloads), query, id=name)


FAILURES = [
    *[
        failure(f"http-{code}", answer(status=code, http=code, message=KEY))
        for code in (400, 401, 404, 413, 429, 500)
    ],
    failure("body-500", answer(status=500, message=f"bad key {KEY}")),
    failure("state-7", answer({"task_id": "t1", "state": -7}, message=KEY)),
    failure("html", raw(200, f"<p>{KEY}</p>".encode())),
    failure("no-data", answer(message=KEY)),
    failure("read-timeout", raises(httpx.ReadTimeout)),
    failure("connect-error", raises(httpx.ConnectError)),
    failure("reset", raises(httpx.ReadError)),
    failure("protocol", raises(httpx.RemoteProtocolError)),
    failure("poll-timeout", processing(), query=processing()),
    failure("unsafe-url", done(image=f"http://evil.example.com/{KEY}")),
    failure("download-expired", done(), raw(404), raw(404), query=done()),
    failure("download-reset", done(), raises(httpx.ReadError)),
    failure("download-timeout", done(), raises(httpx.ReadTimeout)),
    failure("download-500", done(), raw(500, KEY.encode())),
    failure("download-too-big", done(), raw(200, b"x" * 2000)),
]


def chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.mark.parametrize(("create", "downloads", "query"), FAILURES)
async def test_api_key_never_leaks(
    make_client: MakeClient,
    api: FakeApi,
    caplog: pytest.LogCaptureFixture,
    create: Reply,
    downloads: list[Reply],
    query: Reply | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(max_wait=0.05, max_result_bytes=1000)
    api.creates.append(create)
    api.serve(RESULT_URL, *downloads)
    api.query_forever = query

    with pytest.raises(errors.CutoutError) as caught:
        await client.cutout(photo())

    for exc in chain(caught.value):
        assert KEY not in str(exc) and KEY not in repr(exc)
        assert all(KEY not in str(arg) for arg in exc.args)
    assert KEY not in "".join(traceback.format_exception(caught.value))
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in logging.Formatter().format(record)
    assert KEY not in repr(client)


async def test_key_in_a_server_message_is_redacted(client: PicWishClient, api: FakeApi) -> None:
    api.creates.append(answer(status=401, http=401, message=f"key {KEY} is wrong " + "x" * 500))

    with pytest.raises(errors.Unauthorized) as caught:
        await client.cutout(photo())

    text = str(caught.value)
    assert "[redacted]" in text and KEY not in text
    assert len(text) < 300  # the server's message is truncated


async def test_constructor_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError):
        PicWishClient("")


async def test_async_context_manager_closes_the_pool(api: FakeApi) -> None:
    async with PicWishClient(KEY, transport=httpx.MockTransport(api.handler)) as client:
        pass
    assert client._http.is_closed
