"""A client generated from the served OpenAPI document (by openapi-python-client) runs the
merchant's and the till's whole path against a real stack. Which function to call, which body
model to send and which credential to present all come from the document: an operation is
named by its operationId, its body by its request schema, its credential by its security
requirement."""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from support import Stack, eventually

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "qrloop_generated_client"


@pytest.fixture(scope="module")
def document(stack: Stack) -> dict[str, Any]:
    """The document as the running server serves it."""
    answer = httpx.get(stack.base_url + "/schema/openapi.json", timeout=30)
    assert answer.status_code == 200
    served: dict[str, Any] = answer.json()
    return served


@pytest.fixture(scope="module")
def calls(
    stack: Stack, document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SchemaDrivenCalls]:
    """The client openapi-python-client generates from the served document, imported."""
    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    # No formatting hooks: the generated code is imported, not read.
    # Image bodies (POST /v1/redeem/frame) are bytes to this generator, as to most.
    (folder / "config.yaml").write_text(
        "post_hooks: []\ncontent_type_overrides:\n"
        "  image/jpeg: application/octet-stream\n  image/png: application/octet-stream\n",
        encoding="utf-8",
    )
    generation = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yaml",
         "--meta", "none", "--output-path", PACKAGE],
        cwd=folder, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # It warns of each part of the document it could not turn into code, and skips that part.
    assert "Warning" not in generation.stdout + generation.stderr, generation.stdout
    sys.path.insert(0, str(folder))
    try:
        yield SchemaDrivenCalls(document, stack.base_url)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


class SchemaDrivenCalls:
    """Calls operations of the generated client by operationId, each with the credential its
    security requirement names."""

    def __init__(self, document: dict[str, Any], base_url: str) -> None:
        self.document = document
        self.base_url = base_url
        self.credentials: dict[str, str] = {}
        client = importlib.import_module(f"{PACKAGE}.client")
        self._client, self._authenticated = client.Client, client.AuthenticatedClient
        self._models = importlib.import_module(f"{PACKAGE}.models")

    def __call__(
        self, operation_id: str, body: dict[str, Any] | None = None, **arguments: Any
    ) -> Any:
        operation = self._operation(operation_id)
        if body is not None:
            arguments["body"] = self._model(operation).from_dict(body)
        function = self._function(operation)
        return function.sync_detailed(client=self._client_for(operation), **arguments)

    def _operation(self, operation_id: str) -> dict[str, Any]:
        found = [
            operation
            for item in self.document["paths"].values()
            for operation in item.values()
            if isinstance(operation, dict) and operation.get("operationId") == operation_id
        ]
        assert len(found) == 1, f"{operation_id} names {len(found)} operations"
        return found[0]

    def _function(self, operation: dict[str, Any]) -> ModuleType:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", operation["operationId"]).lower()
        return importlib.import_module(f"{PACKAGE}.api.{operation['tags'][0]}.{snake}")

    def _model(self, operation: dict[str, Any]) -> Any:
        reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return getattr(self._models, reference.rsplit("/", 1)[1])

    def _client_for(self, operation: dict[str, Any]) -> Any:
        named = [name for requirement in operation.get("security", []) for name in requirement]
        if not named:
            return self._client(base_url=self.base_url)
        scheme = self.document["components"]["securitySchemes"][named[0]]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        return self._authenticated(
            base_url=self.base_url, token=self.credentials[named[0]], prefix="Bearer"
        )


def test_the_served_document_is_valid_openapi(document: dict[str, Any]) -> None:
    """The document the server serves, as JSON, passes openapi-spec-validator."""
    validate(document)


def test_a_generated_client_creates_a_campaign_and_redeems_a_code(
    stack: Stack, calls: SchemaDrivenCalls
) -> None:
    """With only the generated client: a store and a till, the till's token, a campaign, an
    order of two codes signed in the background, its export; one code redeems at the till
    (200, `redeemed`), again it is refused with the documented problem (409
    `already_redeemed`), and the campaign's stats count it."""
    merchant = stack.new_merchant("Generated client")
    calls.credentials["merchantApiKey"] = merchant.api_key

    store = calls("V1StoresCreateStore", {"name": "Flagship"}).parsed
    terminal = calls("V1TerminalsCreateTerminal", {"store_id": store.id, "name": "Till 1"}).parsed
    token = calls(
        "V1TerminalTokenExchangeToken", {"terminal_id": terminal.id, "secret": terminal.secret}
    ).parsed
    calls.credentials["terminalToken"] = token.access_token

    campaign = calls(
        "V1CampaignsCreateCampaign", {"name": "Free cone", "face_value": 500, "currency": "CNY"}
    )
    assert campaign.status_code == 201
    order = calls(
        "V1CampaignsCampaignIdOrdersCreateOrder",
        {"quantity": 2},
        campaign_id=campaign.parsed.id,
        idempotency_key=uuid.uuid4().hex,
    )
    assert order.status_code == 202

    def signed() -> bool:
        status = calls("V1OrdersOrderIdGetOrder", order_id=order.parsed.id).parsed.status
        return str(status) not in ("queued", "running")

    eventually(signed, within=60)
    export = calls("V1OrdersOrderIdCodesExportCodes", order_id=order.parsed.id)
    assert export.status_code == 200
    code = next(csv.DictReader(io.StringIO(export.content.decode())))["code"]

    redeemed = calls("V1RedeemRedeem", {"code": code, "nonce": "scan-1"})
    assert redeemed.status_code == 200
    assert (redeemed.parsed.status, redeemed.parsed.face_value) == ("redeemed", 500)
    again = calls("V1RedeemRedeem", {"code": code, "nonce": "scan-2"})
    assert again.status_code == 409
    assert str(again.parsed.reason) == "already_redeemed"
    stats = calls("V1CampaignsCampaignIdStatsCampaignStats", campaign_id=campaign.parsed.id)
    assert (stats.parsed.issued, stats.parsed.redeemed) == (2, 1)
