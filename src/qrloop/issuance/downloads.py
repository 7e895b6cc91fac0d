"""An order's codes as a download, in any export format: what `GET /v1/orders/{id}/codes`
answers, and the dashboard's download links too."""

from __future__ import annotations

from litestar.response import Stream

from qrloop.issuance import campaigns, exports, orders
from qrloop.runtime import Runtime


async def download(
    runtime: Runtime, merchant_id: int, order_id: int, export_format: exports.ExportFormat
) -> Stream:
    """The merchant's finished order in `export_format`, named `order-ID.EXT`; 404 for another
    merchant's order, 409 until it is done."""
    order = await orders.find(runtime.pool, merchant_id, order_id)
    exports.ready(order)
    key = exports.key_for(runtime.keys.keyring, order.key_id)
    claim_base = orders.claim_base_of(order, runtime.settings.base_url)
    filename = f"order-{order_id}.{exports.EXTENSIONS[export_format]}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    title = ""
    if export_format is exports.ExportFormat.CSV:
        headers |= exports.csv_headers(key, order, claim_base)
    elif export_format is not exports.ExportFormat.JSON:
        title = (await campaigns.get(runtime.pool, merchant_id, order.campaign_id)).name
    body = exports.derived(key, exports.span_of(order), export_format, claim_base, title)
    return Stream(body, media_type=exports.MEDIA_TYPES[export_format], headers=headers)
