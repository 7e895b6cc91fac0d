"""POST /v1/redeem/frame: a camera frame decoded on the server, then redeemed through the same
decision as POST /v1/redeem; what is not a frame of a code is refused, never a 500."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from datetime import datetime

import httpx
import pytest
from PIL import Image

from frames import blank_frame, qr_frame
from support import Stack, reason, redeem

FRAME = "/v1/redeem/frame"


class Till:
    """A merchant's till in a store with a name, and a campaign in Shanghai's time."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.merchant = stack.new_merchant("Frame Cones")
        self.store_id = self.merchant.created("/v1/stores", {"name": "Nanjing Road"})["id"]
        self.terminal_id, self.token = self.merchant.terminal(self.store_id)
        campaign = self.merchant.campaign(timezone="Asia/Shanghai")
        self.codes = iter(self.merchant.codes(campaign, 10))

    def frame(
        self, body: bytes, nonce: str | None = None, media: str = "image/jpeg", **headers: str
    ) -> httpx.Response:
        return httpx.post(
            self.stack.base_url + FRAME,
            params={"nonce": nonce or uuid.uuid4().hex},
            content=body,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": media, **headers},
            timeout=30,
        )


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Till:
    return Till(stack)


def test_a_frame_of_a_code_redeems_it_once(stack: Stack, shop: Till) -> None:
    """A 640x480 JPEG of a real code's QR redeems it (200); another frame of it is 409
    already_redeemed, saying the store's name and the time in the campaign's timezone; the
    first frame retried with its nonce gets its first answer again."""
    code = next(shop.codes)
    frame = qr_frame(code)
    first = shop.frame(frame, nonce="frame-1-" + code[-8:])
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "redeemed"
    assert first.json()["face_value"] == 500

    second = shop.frame(frame)
    assert (second.status_code, reason(second)) == (409, "already_redeemed")
    body = second.json()
    assert body["store_id"] == shop.store_id and body["store_name"] == "Nanjing Road"
    local = datetime.fromisoformat(body["redeemed_at_local"])
    assert local.utcoffset() is not None and local.utcoffset().total_seconds() == 8 * 3600
    assert local == datetime.fromisoformat(body["redeemed_at"])

    retry = shop.frame(frame, nonce="frame-1-" + code[-8:])
    assert retry.status_code == 200
    assert retry.json()["redemption_id"] == first.json()["redemption_id"]


def test_a_png_frame_and_the_typed_path_share_one_decision(stack: Stack, shop: Till) -> None:
    """A PNG frame redeems as well; the same code then typed at POST /v1/redeem is refused
    exactly as another frame would be."""
    code = next(shop.codes)
    assert shop.frame(qr_frame(code, (1280, 720), "PNG"), media="image/png").status_code == 200
    typed = redeem(stack, shop.token, code)
    assert (typed.status_code, reason(typed)) == (409, "already_redeemed")
    assert typed.json()["store_name"] == "Nanjing Road"


def test_a_frame_without_a_code_redeems_nothing(stack: Stack, shop: Till) -> None:
    """A frame holding no QR code answers 200 `no_code`, and counts as no invalid scan."""
    for _ in range(3):
        answer = shop.frame(blank_frame())
        assert (answer.status_code, answer.json()) == (200, {"status": "no_code"})


def test_a_qr_that_is_no_code_is_an_invalid_scan(stack: Stack, shop: Till) -> None:
    """A QR code holding something else (a web link) is refused as POST /v1/redeem refuses a
    typed one: 422 invalid."""
    answer = shop.frame(qr_frame("https://example.com/menu"))
    assert (answer.status_code, reason(answer)) == (422, "invalid")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (1, 2, 3)).save(out, format="JPEG")
    return out.getvalue()[:300]


@pytest.mark.parametrize(
    "body",
    [b"", b"not an image at all", b"GIF89a" + b"\0" * 64, _png_claiming(60000, 60000),
     _truncated_jpeg()],
    ids=["empty", "text", "gif", "bomb", "truncated"],
)  # fmt: skip
def test_what_is_no_readable_frame_is_a_problem(stack: Stack, shop: Till, body: bytes) -> None:
    """Empty bytes, text, another image format, a header claiming billions of pixels and a cut
    JPEG are each 400 bad_request as problem+json, never a 500."""
    answer = shop.frame(body)
    assert (answer.status_code, reason(answer)) == (400, "bad_request")


def test_an_oversize_frame_is_413(stack: Stack, shop: Till) -> None:
    """A body over 2 MiB is refused with 413 payload_too_large, as problem+json."""
    answer = shop.frame(b"\xff" * (2 * 1024 * 1024 + 1))
    assert (answer.status_code, reason(answer)) == (413, "payload_too_large")


def test_a_frame_needs_a_terminal_token_and_a_nonce(stack: Stack, shop: Till) -> None:
    """No token is 401; a merchant's API key is no terminal token (401); no nonce or a nonce
    outside the redeem call's alphabet is 400. Nothing is redeemed: the code redeems after."""
    code = next(shop.codes)
    frame = qr_frame(code)
    url = stack.base_url + FRAME
    no_token = httpx.post(url, params={"nonce": "n-1"}, content=frame)
    assert (no_token.status_code, reason(no_token)) == (401, "unauthorized")
    wrong = httpx.post(url, params={"nonce": "n-1"}, content=frame, headers=shop.merchant.headers)
    assert (wrong.status_code, reason(wrong)) == (401, "unauthorized")
    for params in ({}, {"nonce": "spaces are not allowed"}, {"nonce": "x" * 65}):
        answer = httpx.post(
            url, params=params, content=frame, headers={"Authorization": f"Bearer {shop.token}"}
        )
        assert (answer.status_code, reason(answer)) == (400, "bad_request")
    assert shop.frame(frame).status_code == 200
