"""The API's documentation pages, with every script, style sheet and font served from the
package (static/docs): they work on a closed network and ask no third party for anything."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.static_files import create_static_files_router

STATIC_PATH = "/static"
_STATIC_DIR = Path(__file__).parent / "static"
_DOCS = f"{STATIC_PATH}/docs"
# The framework writes this first into each page's <head>, before any script: no outside
# favicon (its default is on a CDN), and a policy that lets the page load only from this
# server, so the one outside image the pages still name (ReDoc's logo) is never requested.
# Inline script and style: the framework's page starts the viewer from an inline script, and
# both viewers style themselves inline.
_HEAD = (
    "<link rel='icon' href='data:,'>"
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
    " script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
    " worker-src 'self' blob:; base-uri 'none'; form-action 'self'\">"
)


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """ReDoc at /schema and /schema/redoc, Swagger UI at /schema/swagger, the document itself
    as JSON and YAML."""
    return [
        RedocRenderPlugin(
            path=["/", "/redoc"],
            js_url=f"{_DOCS}/redoc/redoc.standalone.js",
            google_fonts=False,
            favicon=_HEAD,
        ),
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{_DOCS}/swagger-ui/swagger-ui-bundle.js",
            css_url=f"{_DOCS}/swagger-ui/swagger-ui.css",
            standalone_preset_js_url=f"{_DOCS}/swagger-ui/swagger-ui-standalone-preset.js",
            favicon=_HEAD,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def static_files() -> Router:
    """The package's static files; an hour in caches (they change only with a release)."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[_STATIC_DIR],
        cache_control=CacheControlHeader(max_age=3600, public=True),
    )
