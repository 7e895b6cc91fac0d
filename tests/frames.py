"""Camera-like frames of real codes for the till tests: a code's QR, as the signer's renderer
draws it, on a grey background the size of a phone camera's preview."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from qrloop.codes.render import png_bytes


def qr_frame(
    text: str, size: tuple[int, int] = (640, 480), image_format: str = "JPEG", scale: int = 6
) -> bytes:
    """A `size` frame with the QR of `text` in its middle, encoded as `image_format`."""
    frame = qr_image(text, size, scale)
    out = io.BytesIO()
    frame.save(out, format=image_format, quality=85)
    return out.getvalue()


def qr_image(text: str, size: tuple[int, int], scale: int = 6) -> Image.Image:
    code = Image.open(io.BytesIO(png_bytes(text, scale=scale))).convert("RGB")
    frame = Image.new("RGB", size, (170, 170, 165))
    frame.paste(code, ((size[0] - code.width) // 2, (size[1] - code.height) // 2))
    return frame


def blank_frame(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(out, format="JPEG")
    return out.getvalue()


def write_y4m(path: Path, image: Image.Image, frames: int = 4, fps: int = 10) -> None:
    """`image` as a short YUV 4:2:0 video for Chromium's fake camera
    (`--use-file-for-fake-video-capture`), which loops it."""
    width, height = image.size
    y, cb, cr = image.convert("YCbCr").split()
    half = (width // 2, height // 2)
    planes = y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + planes)
