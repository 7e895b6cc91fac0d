"""Camera frames from phones that have no `BarcodeDetector`: find the QR code in a JPEG or PNG
with zxing-cpp, in a worker thread (Pillow and zxing-cpp release the GIL while they decode), so
the event loop goes on answering tills meanwhile."""

from __future__ import annotations

import io

import anyio
import zxingcpp
from PIL import Image

from qrloop.errors import Problem, Reason

MAX_FRAME_BYTES = 2 * 1024 * 1024
# Larger than any phone camera's preview frame; a small file that claims more pixels (a
# decompression bomb) is refused before it is decoded.
MAX_FRAME_PIXELS = 4096 * 4096
_FORMATS = ("JPEG", "PNG")
_QR = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
# Decodes at once per process: frames queue rather than take every core from the tills.
_DECODERS = anyio.CapacityLimiter(2)


def unreadable() -> Problem:
    return Problem(Reason.BAD_REQUEST, "The body is not a JPEG or PNG image that can be read.")


def decode_frame(image_bytes: bytes) -> str | None:
    """The text of the first QR code in the image, or None if it holds none; 400 for bytes that
    are no readable JPEG or PNG."""
    try:
        with Image.open(io.BytesIO(image_bytes), formats=_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_FRAME_PIXELS:
                raise Problem(
                    Reason.BAD_REQUEST,
                    f"The image has {width}x{height} pixels; at most {MAX_FRAME_PIXELS} are read.",
                )
            gray = image.convert("L")
    except Problem:
        raise
    # Whatever a crafted file makes Pillow raise, it is the file's fault: 400, never 500.
    except Exception:
        raise unreadable() from None
    for found in zxingcpp.read_barcodes(gray, formats=_QR):
        if found.valid and found.text:
            return str(found.text)
    return None


async def code_in_frame(image_bytes: bytes) -> str | None:
    """`decode_frame` off the event loop, at most two at once per process."""
    return await anyio.to_thread.run_sync(decode_frame, image_bytes, limiter=_DECODERS)
