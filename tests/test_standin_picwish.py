"""The PicWish stand-in behaves as the spec says, seen over real HTTP with httpx."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from skimage import data as skdata

from tests.standins.picwish_api import (
    CREATE_PATH,
    MAX_FILE_BYTES,
    STATUS_DROPPED,
    FakePicWish,
    Outcome,
    head_box,
    head_ellipse,
)

KEY = "test-key"


def _encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def photo(astronaut: Image.Image) -> bytes:
    return _encode(astronaut)


@pytest.fixture
def fake() -> Iterator[FakePicWish]:
    with FakePicWish(KEY, qps=100, latency=0.0) as server:
        yield server


@pytest.fixture
def client(fake: FakePicWish) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"X-API-KEY": KEY}, timeout=10) as http:
        yield http


def create(
    client: httpx.Client, photo: bytes | None = None, *, url: str | None = None, **fields: str
) -> httpx.Response:
    files: dict[str, Any] = {name: (None, value) for name, value in fields.items()}
    if photo is not None:
        files["image_file"] = ("photo.jpg", photo, "image/jpeg")
    if url is not None:
        files["image_url"] = (None, url)
    return client.post(CREATE_PATH, files=files)


def query(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"{CREATE_PATH}/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == 200
    return body["data"]  # type: ignore[no-any-return]


def done_data(fake: FakePicWish, client: httpx.Client, task_id: str) -> dict[str, Any]:
    fake.wait_for(lambda: fake.task_done(task_id))
    return query(client, task_id)


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def open_image(client: httpx.Client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


# --- success -------------------------------------------------------------------------------------


def test_sync_create_returns_a_transparent_head_cutout(
    fake: FakePicWish, client: httpx.Client, photo: bytes, astronaut: Image.Image
) -> None:
    response = create(client, photo, sync="1")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["message"]) == (200, "success")
    data = body["data"]
    assert (data["state"], data["progress"], data["output_type"]) == (1, 100, 1)
    for stamp in ("created_at", "processed_at", "completed_at"):
        assert data[stamp].isdigit()
    cutout = open_image(client, data["image"])
    assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", astronaut.size)
    width, height = cutout.size
    for corner in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
        assert pixel(cutout, corner)[3] == 0
    cx, cy, _, _ = head_ellipse(width, height)
    centre = pixel(cutout, (int(cx), int(cy)))
    assert centre[3] == 255
    original = pixel(Image.open(io.BytesIO(photo)).convert("RGB"), (int(cx), int(cy)))
    assert centre[:3] == original
    mask = open_image(client, data["mask"])
    assert mask.mode == "L"
    assert mask.tobytes() == cutout.getchannel("A").tobytes()
    # Downloads are not API requests.
    assert [(r.kind, r.status, r.file_size) for r in fake.requests] == [("create", 200, len(photo))]
    assert [d.status for d in fake.downloads] == [200, 200]


def test_a_primed_upload_is_answered_with_the_cutout_it_would_have_made(photo: bytes) -> None:
    with FakePicWish(KEY, qps=100, latency=0.0) as plain_fake, FakePicWish(KEY, qps=100, latency=0.0) as fake:
        plain_fake.prime([])
        fake.prime([photo])
        answers = []
        for server in (plain_fake, fake):
            with httpx.Client(base_url=server.url, headers={"X-API-KEY": KEY}, timeout=10) as http:
                data = create(http, photo, sync="1", crop="1").json()["data"]
                answers.append((http.get(data["image"]).content, http.get(data["mask"]).content))
        assert answers[0] == answers[1]
        assert (plain_fake.cut_while_serving, fake.cut_while_serving) == (1, 0)
        with httpx.Client(base_url=fake.url, headers={"X-API-KEY": KEY}, timeout=10) as http:
            create(http, photo, sync="1", crop="0")  # other options than primed: made when asked
        assert fake.cut_while_serving == 1


def test_crop_keeps_the_head_box_and_jpg_has_a_white_background(
    client: httpx.Client, photo: bytes, astronaut: Image.Image
) -> None:
    cropped = open_image(client, create(client, photo, sync="1", crop="1").json()["data"]["image"])
    left, top, right, bottom = head_box(*astronaut.size)
    assert cropped.size == (right - left, bottom - top)

    data = create(client, photo, sync="1", output_format="jpg").json()["data"]
    as_jpg = open_image(client, data["image"])
    assert (as_jpg.format, as_jpg.mode, as_jpg.size) == ("JPEG", "RGB", astronaut.size)
    assert all(channel > 245 for channel in pixel(as_jpg, (0, 0)))


def test_image_url_is_fetched_from_a_local_server(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    first = create(client, photo, sync="1").json()["data"]

    again = create(client, url=first["image"], sync="1").json()["data"]
    missing = create(client, url=f"{fake.url}/results/nothing.png", sync="1").json()["data"]
    remote = create(client, url="http://example.com/face.jpg", sync="1").json()["data"]

    assert again["state"] == 1
    assert (missing["state"], remote["state"]) == (-3, -3)
    assert "image" not in missing


def test_async_task_goes_from_queued_through_processing_to_done(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.set_latency(1.0)
    created = create(client, photo)

    assert (created.json()["status"], list(created.json()["data"])) == (200, ["task_id"])
    task_id = created.json()["data"]["task_id"]
    queued = query(client, task_id)
    fake.wait_for(lambda: fake.task_state(task_id) == 4)
    processing = query(client, task_id)
    done = done_data(fake, client, task_id)

    assert (queued["state"], "image" in queued) in ((0, False), (2, False))  # 0 unless the host is slow
    assert (processing["state"], "image" in processing) == (4, False)
    assert queued["progress"] <= processing["progress"] < done["progress"] == 100
    assert done["state"] == 1
    assert open_image(client, done["image"]).mode == "RGBA"


def test_sync_create_slower_than_the_wait_limit_answers_processing(photo: bytes) -> None:
    with (
        FakePicWish(KEY, qps=100, latency=0.6, sync_wait_limit=0.1) as fake,
        httpx.Client(base_url=fake.url, headers={"X-API-KEY": KEY}) as client,
    ):
        data = create(client, photo, sync="1").json()["data"]

        assert (data["state"], "image" in data) == (4, False)
        assert data["progress"] < 100
        assert done_data(fake, client, data["task_id"])["state"] == 1


# --- refusals ------------------------------------------------------------------------------------


def test_wrong_api_key_is_401_and_uses_no_qps(fake: FakePicWish, photo: bytes) -> None:
    with httpx.Client(base_url=fake.url, headers={"X-API-KEY": "wrong"}) as stranger:
        response = create(stranger, photo, sync="1")
        anonymous = httpx.get(f"{fake.url}{CREATE_PATH}/some-task")

    assert response.status_code == anonymous.status_code == 401
    assert response.json()["status"] == 401
    assert isinstance(response.json()["message"], str)
    assert [r.status for r in fake.requests] == [401, 401]
    assert fake.max_in_window() == 0


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("both", {}),
        ("neither", {}),
        ("file", {"sync": "2"}),
        ("file", {"crop": "yes"}),
        ("file", {"output_format": "webp"}),
    ],
)
def test_bad_parameters_are_400(
    client: httpx.Client, photo: bytes, source: str, fields: dict[str, str]
) -> None:
    url = "http://127.0.0.1:1/face.jpg" if source == "both" else None
    response = create(client, photo if source in ("both", "file") else None, url=url, **fields)

    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_form_that_is_not_multipart_is_400(client: httpx.Client) -> None:
    response = client.post(CREATE_PATH, data={"image_url": "http://127.0.0.1:1/a.jpg"})

    assert response.status_code == 400


@pytest.mark.parametrize("size", [MAX_FILE_BYTES + 1, MAX_FILE_BYTES + 2 * 1024 * 1024])
def test_upload_over_20_mb_is_413(client: httpx.Client, size: int) -> None:
    response = create(client, b"\xff" * size, sync="1")

    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_picture_over_4096_px_is_400(client: httpx.Client) -> None:
    response = create(client, _encode(Image.new("L", (4097, 8)), "PNG"), sync="1")

    assert response.status_code == 400


def test_unknown_task_is_404(client: httpx.Client) -> None:
    response = client.get(f"{CREATE_PATH}/no-such-task")

    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_uniform_picture_has_no_face(client: httpx.Client) -> None:
    blank = _encode(Image.new("RGB", (300, 400), (250, 250, 250)))

    data = create(client, blank, sync="1").json()["data"]

    assert (data["state"], "image" in data) == (-14, False)


def test_file_pillow_cannot_open_fails_with_minus_7(client: httpx.Client) -> None:
    data = create(client, b"this is not a picture", sync="1").json()["data"]

    assert data["state"] == -7


async def test_burst_over_qps_gets_429_and_the_window_never_exceeds_qps() -> None:
    with FakePicWish(KEY, qps=2) as fake:
        async with httpx.AsyncClient(base_url=fake.url, headers={"X-API-KEY": KEY}) as client:
            answers = await asyncio.gather(*(client.get(f"{CREATE_PATH}/t{i}") for i in range(8)))

        statuses = sorted(r.status_code for r in answers)
        assert statuses == [404, 404] + [429] * 6
        assert all(r.json()["status"] == r.status_code for r in answers)
        assert fake.count_429 == 6
        assert fake.max_in_window() == 2
        assert sum(r.accepted for r in fake.requests) == 2


def test_qps_window_slides_by_arrival_time() -> None:
    with (
        FakePicWish(KEY, qps=1) as fake,
        httpx.Client(base_url=fake.url, headers={"X-API-KEY": KEY}) as client,
    ):
        first = client.get(f"{CREATE_PATH}/a")
        refused = client.get(f"{CREATE_PATH}/b")
        fake.wait_for(lambda: time.monotonic() - fake.requests[0].at >= 1.0, timeout=2)
        later = client.get(f"{CREATE_PATH}/c")

        assert [first.status_code, refused.status_code, later.status_code] == [404, 429, 404]
        assert fake.max_in_window() == 1


# --- result expiry -------------------------------------------------------------------------------


def test_result_urls_expire_like_object_storage(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    data = create(client, photo, sync="1").json()["data"]
    assert client.get(data["image"]).status_code == 200

    fake.expire_results()

    for url in (data["image"], data["mask"]):
        expired = client.get(url)
        assert expired.status_code == 403
        assert b"<Error>" in expired.content
    assert create(client, photo, sync="1").json()["data"]["state"] == 1  # new results are fresh


def test_result_urls_expire_after_result_ttl(photo: bytes) -> None:
    with (
        FakePicWish(KEY, qps=100, result_ttl=0.0) as fake,
        httpx.Client(base_url=fake.url, headers={"X-API-KEY": KEY}) as client,
    ):
        data = create(client, photo, sync="1").json()["data"]

        assert client.get(data["image"]).status_code == 403


# --- scripted outcomes ---------------------------------------------------------------------------


def test_http_error_outcome_then_normal_service(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.script(Outcome.http(500), Outcome.http(429))

    failed = create(client, photo, sync="1")
    throttled = create(client, photo, sync="1")
    normal = create(client, photo, sync="1")

    assert (failed.status_code, failed.json()) == (500, {"status": 500, "message": failed.json()["message"]})
    assert throttled.status_code == 429
    assert normal.status_code == 200
    assert fake.count_429 == 1
    assert fake.scripted_left == 0


def test_body_status_outcome_is_http_200_with_a_failing_body(fake: FakePicWish, client: httpx.Client) -> None:
    fake.script(Outcome.body_status(500), on="query")

    response = client.get(f"{CREATE_PATH}/whatever")

    assert response.status_code == 200
    assert response.json()["status"] == 500


def test_state_outcome_fails_sync_and_async_tasks(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.script(Outcome.state(-8), Outcome.state(-14))

    sync = create(client, photo, sync="1").json()["data"]
    task_id = create(client, photo).json()["data"]["task_id"]
    later = done_data(fake, client, task_id)

    assert (sync["state"], "image" in sync) == (-8, False)
    assert (later["state"], "image" in later) == (-14, False)


def test_malformed_outcome_is_not_json(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    fake.script(Outcome.malformed())

    response = create(client, photo, sync="1")

    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_reset_outcome_is_a_connection_error(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    fake.script(Outcome.reset(), on="any")

    with pytest.raises(httpx.TransportError):
        create(client, photo, sync="1")

    assert fake.requests[0].status == STATUS_DROPPED
    assert create(client, photo, sync="1").status_code == 200


def test_slow_outcome_delays_only_its_own_answer(fake: FakePicWish, client: httpx.Client) -> None:
    fake.script(Outcome.slow(1.0), on="query")
    slow_answers: list[int] = []
    slow = threading.Thread(target=lambda: slow_answers.append(client.get(f"{CREATE_PATH}/slow").status_code))
    slow.start()
    fake.wait_for(lambda: len(fake.queries()) == 1)

    quick = client.get(f"{CREATE_PATH}/quick")

    assert quick.status_code == 404
    assert fake.queries()[0].status == 0  # the slow one is still unanswered
    slow.join(timeout=5)
    assert slow_answers == [404]


def test_slow_outcome_trips_a_client_timeout(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    fake.script(Outcome.slow(0.5))

    with pytest.raises(httpx.ReadTimeout):
        client.post(CREATE_PATH, files={"image_file": ("a.jpg", photo), "sync": (None, "1")}, timeout=0.1)


def test_processing_outcome_makes_the_client_poll(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.script(Outcome.processing())

    data = create(client, photo, sync="1").json()["data"]

    assert (data["state"], "image" in data) == (4, False)
    assert data["progress"] < 100
    assert done_data(fake, client, data["task_id"])["state"] == 1


def test_no_image_outcome_succeeds_without_an_image(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.script(Outcome.no_image())

    data = create(client, photo, sync="1").json()["data"]

    assert data["state"] == 1
    assert "image" not in data
    assert "image" not in query(client, data["task_id"])


def test_expired_result_outcome_hands_out_a_dead_url(
    fake: FakePicWish, client: httpx.Client, photo: bytes
) -> None:
    fake.script(Outcome.expired_result())

    data = create(client, photo, sync="1").json()["data"]

    assert data["state"] == 1
    assert client.get(data["image"]).status_code == 403


def test_query_outcomes_change_one_answer_only(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    task_id = create(client, photo, sync="1").json()["data"]["task_id"]
    fake.script(Outcome.processing(), Outcome.state(-15), Outcome.no_image(), on="query")

    answers = [query(client, task_id) for _ in range(4)]

    assert [a["state"] for a in answers] == [4, -15, 1, 1]
    assert ["image" in a for a in answers] == [False, False, False, True]


def test_script_targets_are_consumed_in_order(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    fake.script(Outcome.http(503), on="query")
    fake.script(Outcome.http(502), on="any")

    created = create(client, photo, sync="1")  # skips the query outcome, takes the "any" one
    queried = client.get(f"{CREATE_PATH}/x")

    assert (created.status_code, queried.status_code) == (502, 503)
    assert fake.scripted_left == 0


def test_wait_for_times_out_with_a_useful_message(fake: FakePicWish) -> None:
    with pytest.raises(TimeoutError, match="0 API requests"):
        fake.wait_for(lambda: fake.creates(), timeout=0.1)


def test_latency_can_be_drawn_per_task(fake: FakePicWish, client: httpx.Client, photo: bytes) -> None:
    draws = iter([0.3, 0.0])
    fake.set_latency(lambda: next(draws))

    slow_id = create(client, photo).json()["data"]["task_id"]
    fast_id = create(client, photo).json()["data"]["task_id"]
    fake.wait_for(lambda: fake.task_done(fast_id))

    assert not fake.task_done(slow_id)
    assert done_data(fake, client, slow_id)["state"] == 1
