"""The OpenAPI document, walked operation by operation: a credential unless the operation is
public, an example of every body, the problems it can answer, and examples that fit their
schemas. Operations added later are walked too, so none slips through undocumented."""

from __future__ import annotations

import warnings
from typing import Any

import msgspec
import pytest
from litestar import get
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from qrloop.accounts.guards import current_merchant
from qrloop.accounts.schemas import StoreOut
from qrloop.app import create_app
from qrloop.errors import PROBLEM_MEDIA_TYPE, Reason, status_of
from qrloop.pagination import Page
from qrloop.settings import Settings

# The only operations anyone may call without a credential.
PUBLIC = {("get", "/health/live"), ("get", "/health/ready"), ("post", "/v1/terminal/token")}
METHODS = ("get", "put", "post", "delete", "patch")
JSON = "application/json"


def _document(*extra_handlers: HTTPRouteHandler) -> dict[str, Any]:
    with warnings.catch_warnings():  # the framework's notes on our routes, not this test's
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(
            Settings(database_url="postgresql://unused", redis_url="redis://unused"),
            extra_handlers,
        )
    document: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(app.openapi_schema.to_schema())
    )
    return document


DOCUMENT = _document()
OPERATIONS = [
    (method, path, item[method])
    for path, item in DOCUMENT["paths"].items()
    for method in METHODS
    if method in item
]
IDS = [f"{method.upper()} {path}" for method, path, _ in OPERATIONS]


def _fits(
    instance: Any, schema: dict[str, Any], document: dict[str, Any] | None = None
) -> list[str]:
    """Why `instance` does not fit `schema` (references resolved in the document)."""
    validator = OAS31Validator({**schema, "components": (document or DOCUMENT)["components"]})
    return [error.message for error in validator.iter_errors(instance)]


def _examples(media: dict[str, Any]) -> list[Any]:
    named = [example["value"] for example in media.get("examples", {}).values()]
    return [media["example"], *named] if "example" in media else named


def test_the_document_is_valid_openapi() -> None:
    """openapi-spec-validator accepts the whole document."""
    validate(DOCUMENT)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_the_operation_names_the_credential_it_takes(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """Every operation but the public ones requires a security scheme the document defines,
    so Swagger's Authorize button applies to it, and documents the 401 of a missing one."""
    if (method, path) in PUBLIC:
        assert "security" not in operation
        return
    requirements = operation.get("security")
    assert requirements, "no security requirement"
    schemes = DOCUMENT["components"]["securitySchemes"]
    for requirement in requirements:
        assert set(requirement) <= set(schemes)
    assert "401" in operation["responses"]


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_the_operation_shows_an_example_of_each_body(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """The request body, if any, has an example of each of its forms (JSON, or raw bytes such
    as an image); a success answer with a body has an example of it (every JSON form, and at
    least one form of any other); each example fits its schema."""
    bodies = []
    if "requestBody" in operation:
        forms = list(operation["requestBody"]["content"].values())
        assert forms and all(_examples(media) for media in forms), "no example of the body"
        bodies.extend(forms)
    for code, response in operation["responses"].items():
        content = response.get("content") or {}
        if not code.startswith("2") or not content:
            continue
        assert any(_examples(media) for media in content.values()), f"no example of {code}"
        assert all(_examples(media) for kind, media in content.items() if kind == JSON)
        bodies.extend(content.values())
    for media in bodies:
        for example in _examples(media):
            assert _fits(example, media["schema"]) == []


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_the_operation_documents_its_problems(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """Every refusal an operation can give is documented as problem+json, status by status,
    naming each reason of that status with an example of it that fits the Problem schema; 400,
    404, 500 and 503 everywhere, 413 wherever a body is taken."""
    expected = {"400", "404", "500", "503"} | ({"413"} if "requestBody" in operation else set())
    refusals = {
        code: response
        for code, response in operation["responses"].items()
        if code.startswith(("4", "5"))
    }
    assert expected <= set(refusals)
    for code, response in refusals.items():
        reasons = {reason.value for reason in Reason if status_of(reason) == int(code)}
        media = response["content"][PROBLEM_MEDIA_TYPE]
        assert set(media["examples"]) == reasons
        assert all(reason in response["description"] for reason in reasons)
        for example in _examples(media):
            assert example["reason"] in reasons
            assert _fits(example, media["schema"]) == []


def _structs_with_examples() -> list[type[msgspec.Struct]]:
    """Every body type of qrloop's with an example (the app imports all its areas)."""
    found, pending = [], list(msgspec.Struct.__subclasses__())
    while pending:
        struct = pending.pop()
        pending.extend(struct.__subclasses__())
        if struct.__module__.startswith("qrloop.") and hasattr(struct, "EXAMPLE"):
            found.append(struct)
    return found


@pytest.mark.parametrize("struct", _structs_with_examples(), ids=lambda struct: struct.__name__)
def test_a_body_example_is_one_the_server_would_read(struct: type[msgspec.Struct]) -> None:
    """A body type's `EXAMPLE` decodes as that type from JSON, constraints and all, and names
    no field the type lacks (a misspelt field would only be ignored in an answer)."""
    example = struct.EXAMPLE  # type: ignore[attr-defined]
    msgspec.json.decode(msgspec.json.encode(example), type=struct)
    assert set(example) <= set(struct.__struct_fields__)


def test_a_page_of_a_list_shows_its_items_example() -> None:
    """A list answered as `Page[StoreOut]` shows a page around StoreOut's example, which fits
    the page's schema, and names the merchant's credential its dependency demands."""

    @get("/v1/example-pages", dependencies={"merchant_id": Provide(current_merchant)})
    async def pages(merchant_id: int) -> Page[StoreOut]:
        raise NotImplementedError

    document = _document(pages)
    operation = document["paths"]["/v1/example-pages"]["get"]
    media = operation["responses"]["200"]["content"][JSON]
    assert media["example"]["items"] == [StoreOut.EXAMPLE]
    assert _fits(media["example"], media["schema"], document) == []
    assert operation["security"] == [{"merchantApiKey": []}]
