"""The frame decoder of POST /v1/redeem/frame, alone: it reads the code in a camera frame, and
whatever bytes a stranger sends it answers a text, nothing, or a 400 problem, never anything
else (a 500)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from frames import blank_frame, qr_frame
from qrloop.errors import Problem, Reason
from qrloop.till.frames import decode_frame

CODE = "AEAQAAAAAEAAAAAAAAAKAATF6E2DN4RKYJH2DBPVFPO7G"
JPEG = qr_frame(CODE, (320, 240), scale=4)
PNG = qr_frame(CODE, (320, 240), "PNG", scale=4)


def test_a_frame_gives_its_code_or_nothing() -> None:
    """A JPEG and a PNG of a code's QR give the code's text; a frame of no code, None."""
    assert decode_frame(JPEG) == CODE
    assert decode_frame(PNG) == CODE
    assert decode_frame(blank_frame((320, 240))) is None


@st.composite
def _damaged(draw: st.DrawFn) -> bytes:
    """A real frame with some bytes overwritten, cut short, or both."""
    data = bytearray(draw(st.sampled_from([JPEG, PNG])))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@given(st.binary(max_size=2048) | _damaged())
def test_any_bytes_are_a_code_nothing_or_a_bad_request(body: bytes) -> None:
    """Arbitrary and damaged image bytes never raise but a 400 bad_request problem."""
    reason: Reason | None = None
    found: str | None = None
    try:
        found = decode_frame(body)
    except Problem as problem:
        reason = problem.reason
    assert reason in (None, Reason.BAD_REQUEST)
    assert found is None or isinstance(found, str)
