"""The headers of every page qrloop renders itself (consumer pages, the dashboard): a
Content-Security-Policy that lets nothing load or run but what the page names, no framing,
no sniffing, never cached."""

from __future__ import annotations

import base64
import hashlib


def csp_hash(text: str) -> str:
    """A CSP source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_headers(
    *,
    style_src: str,
    script_src: str,
    referrer: str,
    img_src: str = "'none'",
    form_action: str = "'self'",
) -> dict[str, str]:
    """`style_src`, `script_src` and `img_src` are the only sources of styles, scripts and
    images (hashes, 'self', 'none'); fetches go only to this origin, forms only post to
    `form_action` (here, unless a page has no form)."""
    policy = "; ".join(
        (
            "default-src 'none'",
            f"style-src {style_src}",
            f"script-src {script_src}",
            f"img-src {img_src}",
            "connect-src 'self'",
            f"form-action {form_action}",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": referrer,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
