"""The OpenAPI document as client generators and people read it: who may call each operation,
an example of every body, and the problem+json answers each operation can give, each with the
RFC 9457 schema and an example of every reason that shares its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args, get_origin

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
    Tag,
)
from litestar.routes import HTTPRoute

from qrloop.accounts.guards import current_key, current_merchant, current_terminal
from qrloop.errors import PROBLEM_MEDIA_TYPE, Problem, Reason, status_of
from qrloop.web.docs import render_plugins

JSON = "application/json"
MERCHANT_SCHEME = "merchantApiKey"
TERMINAL_SCHEME = "terminalToken"
METRICS_SCHEME = "metricsToken"
# `/metrics` asks for its token only when QRLOOP_METRICS_TOKEN is set: either requirement.
METRICS_TOKEN_IF_SET: list[SecurityRequirement] = [{METRICS_SCHEME: []}, {}]

_SCHEMES = {
    MERCHANT_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="qrl_live_…",
        description="A merchant API key: `qrloop merchants create` prints the first one, "
        "`POST /v1/api-keys` makes more. Shown once; only its digest is kept.",
    ),
    TERMINAL_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A till's short-lived access token, from `POST /v1/terminal/token` "
        "(the terminal's id and secret).",
    ),
    METRICS_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        description="`QRLOOP_METRICS_TOKEN`, when the operator set one.",
    ),
}
# What each dependency that authenticates a caller stands for in the document.
_SECURITY_BY_GUARD: dict[object, list[SecurityRequirement]] = {
    current_merchant: [{MERCHANT_SCHEME: []}],
    current_key: [{MERCHANT_SCHEME: []}],
    current_terminal: [{TERMINAL_SCHEME: []}],
}

_TAGS = [
    Tag(name="accounts", description="API keys, stores and tills (terminals) of a merchant."),
    Tag(name="issuance", description="Campaigns, orders of signed codes, exports and voids."),
    Tag(name="agreements", description="Other merchants' stores accept a campaign's codes."),
    Tag(name="terminal", description="The till: a token for its secret, redeem, check, reverse."),
    Tag(name="claim", description="Pool links that hand codes out to consumers."),
    Tag(name="settlement", description="What a merchant owes and is owed, day by day."),
    Tag(name="history", description="Settled redemptions a merchant issued or accepted."),
    Tag(name="lookup", description="What became of one code, for its issuer and acceptors."),
    Tag(name="webhooks", description="Signed events POSTed to a merchant's endpoints."),
    Tag(name="operations", description="Liveness, readiness and Prometheus metrics."),
]

_DESCRIPTION = """Signed single-use QR codes: merchants order codes, tills redeem each once.

Merchant operations take `Authorization: Bearer <API key>`; till operations a terminal's
access token (`POST /v1/terminal/token`). Every refusal is `application/problem+json` (RFC 9457)
whose `reason` says why, from one closed set."""

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


def openapi_config() -> OpenAPIConfig:
    """The document's frame: title, tags, security schemes, and the pages that render it."""
    return OpenAPIConfig(
        title="qrloop",
        version="1.0.0",
        path="/schema",
        description=_DESCRIPTION,
        tags=_TAGS,
        components=Components(security_schemes=dict(_SCHEMES)),
        render_plugins=render_plugins(),
        # A route's docstring is its operation's description: what a caller must know.
        use_handler_docstrings=True,
    )


def document(app: Litestar) -> None:
    """Complete the framework's document: security, examples and problems of each operation."""
    openapi = app.openapi_schema
    for path, operation, handler in _operations(app, openapi):
        _document_security(operation, handler)
        _document_examples(operation, handler)
        _document_problems(operation, _statuses(path, operation))
    components = openapi.components
    if not isinstance(components, Components):
        components = openapi.components = Components()
    components.schemas = {**(components.schemas or {}), "Problem": _problem_schema()}


def answered(example: dict[str, Any] | str, media_type: str = JSON) -> dict[int, ResponseSpec]:
    """The 200 answer of a route whose body is no struct (which carries its own `EXAMPLE`)."""
    return {
        200: ResponseSpec(
            data_container=type(example),
            generate_examples=False,
            description="OK",
            media_type=media_type,
            examples=[Example(value=example)],
        )
    }


def json_or_csv(csv_example: str) -> type[Operation]:
    """The operation class of a route that answers JSON or, with `format=csv`, CSV: its 200
    lists both, the CSV with this example."""

    @dataclass
    class JsonOrCsv(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            if isinstance(ok, OpenAPIResponse) and ok.content is not None:
                ok.content["text/csv"] = OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING), example=csv_example
                )

    return JsonOrCsv


def raw_body(media_types: tuple[str, ...], example: str) -> type[Operation]:
    """The operation class of a route that reads its body raw (an image, say): its request body
    is each of these media types, as bytes, with this example."""

    @dataclass
    class RawBody(Operation):
        def __post_init__(self) -> None:
            schema = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            self.request_body = RequestBody(
                required=True,
                content={
                    media: OpenAPIMediaType(schema=schema, example=example) for media in media_types
                },
            )

    return RawBody


def _operations(app: Litestar, openapi: OpenAPI) -> list[tuple[str, Operation, HTTPRouteHandler]]:
    """Each documented operation with its path and the handler that serves it."""
    found = []
    for route in app.routes:
        item = (openapi.paths or {}).get(route.path_format or "/")
        if not isinstance(route, HTTPRoute) or item is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            operation = getattr(item, method.lower(), None)
            if isinstance(operation, Operation):
                found.append((route.path_format, operation, handler))
    return found


def _document_security(operation: Operation, handler: HTTPRouteHandler) -> None:
    """The credential the handler's own dependencies demand, unless it declares one itself:
    the document says what the code enforces."""
    if operation.security:
        return
    for provider in handler.resolve_dependencies().values():
        security = _SECURITY_BY_GUARD.get(provider.dependency)
        if security is not None:
            operation.security = list(security)


def _document_examples(operation: Operation, handler: HTTPRouteHandler) -> None:
    """A JSON body's example is its type's `EXAMPLE` (a list's, its item's in a list)."""
    signature = handler.parsed_fn_signature
    data = signature.parameters.get("data")
    if data is not None and isinstance(operation.request_body, RequestBody):
        _set_example(operation.request_body.content, _example(data.annotation))
    for code, response in (operation.responses or {}).items():
        if code.startswith("2") and isinstance(response, OpenAPIResponse) and response.content:
            _set_example(response.content, _example(signature.return_type.annotation))


def _set_example(content: dict[str, OpenAPIMediaType], example: Any) -> None:
    media = content.get(JSON)
    if media is not None and example is not None and media.example is None and not media.examples:
        content[JSON] = _ExampleAsIs(schema=media.schema, encoding=media.encoding, example=example)


@dataclass
class _ExampleAsIs(OpenAPIMediaType):
    """A JSON body whose example keeps its null fields: the framework drops every None from
    the dictionaries it renders, and a required field left out is no example of the schema."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schema["example"] = self.example
        return schema


def _example(annotation: Any) -> Any:
    """The example of a body of this type: a struct's `EXAMPLE`, one in a list for a list, a
    generic struct's `example_of` its arguments' (`Page[StoreOut]`), and for a union or a
    `Response[...]` the first of its types that has one."""
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is list:
        item = _example(arguments[0])
        return None if item is None else [item]
    if hasattr(origin, "example_of"):
        inner = [_example(argument) for argument in arguments]
        return None if None in inner else origin.example_of(*inner)
    for argument in arguments:
        found = _example(argument)
        if found is not None:
            return found
    return getattr(annotation, "EXAMPLE", None)


def _statuses(path: str, operation: Operation) -> set[int]:
    statuses = set(_EVERYWHERE)
    if operation.request_body is not None:
        statuses |= _WITH_A_BODY
    if not path.startswith(_UNAUTHENTICATED):
        statuses |= _WITH_A_CREDENTIAL
    for tag in operation.tags or []:
        statuses |= _BY_TAG.get(tag, set())
    return statuses


def _document_problems(operation: Operation, statuses: set[int]) -> None:
    """Replace the framework's own error responses with the problems the operation answers."""
    responses = {
        code: response
        for code, response in (operation.responses or {}).items()
        if not code.startswith(("4", "5"))
    }
    for status in sorted(statuses):
        reasons = [reason for reason in Reason if status_of(reason) == status]
        responses[str(status)] = OpenAPIResponse(
            description="A refusal: " + ", ".join(reasons),
            content={
                PROBLEM_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Reference(ref="#/components/schemas/Problem"),
                    examples={reason.value: _problem_example(reason) for reason in reasons},
                )
            },
        )
    operation.responses = responses


def _problem_example(reason: Reason) -> Example:
    body = Problem(reason, "What happened, for a person to read.").body()
    return Example(summary=body["title"], value=body)


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
