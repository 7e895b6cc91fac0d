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
# No outside favicon (the framework's default is fetched from a CDN): the browser's own.
_NO_FAVICON = "<link rel='icon' href='data:,'>"


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """ReDoc at /schema and /schema/redoc, Swagger UI at /schema/swagger, the document itself
    as JSON and YAML."""
    return [
        RedocRenderPlugin(
            path=["/", "/redoc"],
            js_url=f"{_DOCS}/redoc/redoc.standalone.js",
            google_fonts=False,
            favicon=_NO_FAVICON,
        ),
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{_DOCS}/swagger-ui/swagger-ui-bundle.js",
            css_url=f"{_DOCS}/swagger-ui/swagger-ui.css",
            standalone_preset_js_url=f"{_DOCS}/swagger-ui/swagger-ui-standalone-preset.js",
            favicon=_NO_FAVICON,
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
