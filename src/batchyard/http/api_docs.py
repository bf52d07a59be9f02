"""The API's documentation page, /docs: Swagger UI shipped in the package (5.36.0, from
swagger-ui-dist; LICENSE beside it), so it works without internet access, under a
Content-Security-Policy that allows nothing but this server."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
DOCS_PATH = "/docs"
_ASSETS_PATH = f"{DOCS_PATH}/assets"

_HEADERS = {
    # scripts and styles from this server only; Swagger UI sets style attributes on its
    # elements, so inline styles are allowed (inline scripts are not)
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and its assets from the package (create the app with ``docs_url=None``)."""
    app.mount(_ASSETS_PATH, StaticFiles(directory=ASSETS), name="api-docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def api_docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        schema = f"{root}{app.openapi_url}"
        assets = f"{root}{_ASSETS_PATH}"
        page = (
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{escape(app.title)} - API</title>"
            f'<link rel=stylesheet href="{assets}/swagger-ui.css"></head>'
            f'<body data-schema="{escape(schema)}"><div id=swagger-ui></div>'
            f'<script src="{assets}/swagger-ui-bundle.js"></script>'
            f'<script src="{assets}/init.js"></script></body></html>'
        )
        return HTMLResponse(page, headers=_HEADERS)
