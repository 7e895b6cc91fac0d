"""schemathesis over the whole OpenAPI document: every operation, valid and invalid input,
with a merchant's API key or a till's access token. No answer is a server error, and every
answer (problem+json refusals included) is one the document lists, in its schema."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qrloop.app import create_app
from qrloop.settings import Settings
from support import Stack, Stores, reason, serving

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class Credentials:
    merchant: str
    terminal: str
    # Another merchant, with one key, for the operation that revokes keys: fuzzed with the
    # shared key, it revoked that key once the fuzzer had made it a sibling, and every operation
    # after it was answered 401 and so tested nothing (a merchant's last key is never revoked).
    # The fuzzed till is this merchant's too, so fuzzing rotate-secret or disable cannot end it.
    one_key_merchant: str


@pytest.fixture(scope="module")
def fuzzed_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API alone (fuzzed orders of millions of codes stay queued, not signed), and no
    invalid-scan limit, so the till routes are fuzzed past the first few refusals."""
    with serving(
        stores,
        tmp_path_factory.mktemp("fuzzed"),
        QRLOOP_RUN_WORKER="false",
        QRLOOP_INVALID_SCANS_PER_MINUTE="10000",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def credentials(fuzzed_stack: Stack) -> Credentials:
    merchant = fuzzed_stack.new_merchant()
    bystander = fuzzed_stack.new_merchant("One key")
    store_id = bystander.created("/v1/stores", {"name": "Fuzzed"})["id"]
    return Credentials(merchant.api_key, bystander.terminal_token(store_id), bystander.api_key)


@pytest.fixture(scope="module")
def api_schema(fuzzed_stack: Stack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzzed_stack.base_url + "/schema/openapi.json")


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the document the app serves."""
    with warnings.catch_warnings():  # the framework's notes on our routes, not this test's
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused"))
    return [
        (method.upper(), path)
        for path, item in (app.openapi_schema.paths or {}).items()
        for method in ("get", "put", "post", "delete", "patch")
        if getattr(item, method) is not None
    ]


@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_operation_answers_a_server_error_or_off_its_schema(
    method: str,
    path: str,
    mode: GenerationMode,
    api_schema: schemathesis.BaseSchema,
    credentials: Credentials,
    fuzzed_stack: Stack,
) -> None:
    """The operation, with input that fits its schema and input that does not, and the
    credential its callers hold (a till's token for the terminal routes, else the merchant's
    key): no 5xx, and status, content type and body as the document says."""
    operation = api_schema[path][method]
    if "terminal" in (operation.tags or []):
        token = credentials.terminal
    elif path.startswith("/v1/api-keys/"):
        token = credentials.one_key_merchant
    else:
        token = credentials.merchant

    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=fuzzed_stack.base_url,
            session=session,
            headers={"Authorization": f"Bearer {token}"},
            checks=CHECKS,
            timeout=30,
        )

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("every input fits this operation's schema (say, one text path parameter)")


# Regression tests for what the fuzzing above found.

BEYOND_BIGINT = 11347982556409556696563712


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/campaigns/{BEYOND_BIGINT}"),
        ("GET", f"/v1/campaigns/{BEYOND_BIGINT}/stats"),
        ("POST", f"/v1/campaigns/{BEYOND_BIGINT}/pause"),
        ("GET", f"/v1/orders/{BEYOND_BIGINT}"),
        ("GET", f"/v1/orders/{BEYOND_BIGINT}/codes?format=png"),
        ("POST", f"/v1/orders/{BEYOND_BIGINT}/cancel"),
        ("GET", f"/v1/webhooks/{BEYOND_BIGINT}"),
        ("DELETE", f"/v1/webhooks/{BEYOND_BIGINT}"),
        ("POST", f"/v1/webhooks/-{BEYOND_BIGINT}/deliveries/8408/retry"),
        ("POST", f"/v1/stores/{BEYOND_BIGINT}/disable"),
    ],
)
def test_an_id_beyond_bigint_is_404(
    fuzzed_stack: Stack, credentials: Credentials, method: str, path: str
) -> None:
    """An id in a path too large for PostgreSQL's bigint (the driver refused to send it: a
    500) names nothing: 404 not_found."""
    answer = httpx.request(
        method,
        fuzzed_stack.base_url + path,
        headers={"Authorization": f"Bearer {credentials.merchant}"},
    )
    assert answer.status_code == 404, answer.text
    assert reason(answer) == "not_found"


def test_the_settlement_csv_has_one_charset_and_is_documented(
    fuzzed_stack: Stack, credentials: Credentials
) -> None:
    """The CSV settlement report said `text/csv; charset=utf-8; charset=utf-8`, and the
    OpenAPI document listed only its JSON form."""
    report = httpx.get(
        fuzzed_stack.base_url + "/v1/settlements",
        params={"date": "2026-01-01", "format": "csv"},
        headers={"Authorization": f"Bearer {credentials.merchant}"},
    )
    assert report.headers["content-type"] == "text/csv; charset=utf-8"
    document = httpx.get(fuzzed_stack.base_url + "/schema/openapi.json").json()
    content = document["paths"]["/v1/settlements"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv"}
