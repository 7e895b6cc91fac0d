"""The OpenAPI document's refusals: each operation lists the problem+json answers it can give,
each with the RFC 9457 schema and the reasons that share its status."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)

from qrloop.errors import PROBLEM_MEDIA_TYPE, Reason, status_of

# Any route: malformed input, an unknown id, our own failure, a state store down.
_EVERYWHERE = {400, 404, 500, 503}
_WITH_A_BODY = {413}
_WITH_A_CREDENTIAL = {401}
# Refusals of one part of the API (by the operation's tag).
_BY_TAG = {
    "terminal": {403, 409, 422, 429},
    "issuance": {409, 422, 429},
    "claim": {409},
    "webhooks": {409},
    "accounts": {409},
    "agreements": {403, 409},
    "lookup": {422, 429},
}
_UNAUTHENTICATED = ("/health/",)


@dataclass
class JsonOrCsv(Operation):
    """An operation answering JSON or, with `format=csv`, CSV: both are listed for its 200."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/csv"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))


def document_problems(openapi: OpenAPI) -> None:
    """Replace the framework's own error responses with the problems each operation answers."""
    components = openapi.components
    if not isinstance(components, Components):
        components = openapi.components = Components()
    components.schemas = {**(components.schemas or {}), "Problem": _problem_schema()}
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method)
            if isinstance(operation, Operation):
                _document(operation, _statuses(path, operation))


def _statuses(path: str, operation: Operation) -> set[int]:
    statuses = set(_EVERYWHERE)
    if operation.request_body is not None:
        statuses |= _WITH_A_BODY
    if not path.startswith(_UNAUTHENTICATED):
        statuses |= _WITH_A_CREDENTIAL
    for tag in operation.tags or []:
        statuses |= _BY_TAG.get(tag, set())
    return statuses


def _document(operation: Operation, statuses: set[int]) -> None:
    responses = {
        code: response
        for code, response in (operation.responses or {}).items()
        if not code.startswith(("4", "5"))
    }
    for status in sorted(statuses):
        reasons = [reason.value for reason in Reason if status_of(reason) == status]
        responses[str(status)] = OpenAPIResponse(
            description="A refusal: " + ", ".join(reasons),
            content={
                PROBLEM_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Reference(ref="#/components/schemas/Problem")
                )
            },
        )
    operation.responses = responses


def _problem_schema() -> Schema:
    text = Schema(type=OpenAPIType.STRING)
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail", "reason"],
        properties={
            "type": text,
            "title": text,
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": text,
            "reason": Schema(type=OpenAPIType.STRING, enum=[reason.value for reason in Reason]),
        },
        description="RFC 9457 problem details; `reason` is the machine-readable cause.",
    )
