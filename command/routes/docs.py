"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from this server.

FastAPI's own pages load both from a CDN and start Swagger UI with an inline script, which the
Content-Security-Policy (``script-src 'self'``) forbids. Here every file comes from this server:
Swagger UI from ``swagger-ui-dist`` and ReDoc's standalone bundle from ``redoc``, both installed
by ``npm ci --prefix frontend`` (pinned in ``frontend/package-lock.json``), and Swagger UI is
started by ``frontend/docs/swagger-init.js``; ReDoc starts itself on its ``<redoc>`` element.
Until the npm packages are installed, the pages and ``/vendor/...`` answer 503 with how to
install them.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from command.routes.wall import FRONTEND

SWAGGER_UI = "/vendor/swagger-ui"
REDOC = "/vendor/redoc"
SETUP_HINT = (
    "The API docs' browser packages (Swagger UI, ReDoc) are not installed: run 'make run', or "
    "'npm ci --prefix frontend', then reload. The OpenAPI document is at {openapi}."
)


class _Installed(StaticFiles):
    """Static files whose folder may appear only after the server started (``npm ci``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            hint = SETUP_HINT.format(openapi="/openapi.json")
            await PlainTextResponse(hint, status_code=503)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


#: No favicon request (a 404 in the console): the page has none of its own.
NO_ICON = "<link rel='icon' href='data:,'>\n"


def swagger_ui_dir(frontend: Path) -> Path:
    return frontend / "node_modules" / "swagger-ui-dist"


def redoc_dir(frontend: Path) -> Path:
    return frontend / "node_modules" / "redoc" / "bundles"


def _page(title: str, head: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _setup_needed(openapi: str) -> HTMLResponse:
    hint = escape(SETUP_HINT.format(openapi=openapi))
    return HTMLResponse(_page("Rallypoint: setup needed", NO_ICON, f"<p>{hint}</p>\n"), 503)


def mount(app: FastAPI, frontend: Path = FRONTEND) -> None:
    """Serve ``/docs``, ``/redoc`` and their files. The app is made with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN pages are not there too."""
    openapi = app.openapi_url or "/openapi.json"
    title = escape(app.title)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> Response:
        if not (swagger_ui_dir(frontend) / "swagger-ui-bundle.js").is_file():
            return _setup_needed(openapi)
        head = (
            f"<link rel='stylesheet' href='{SWAGGER_UI}/swagger-ui.css'>\n"
            f"<link rel='icon' href='{SWAGGER_UI}/favicon-32x32.png'>\n"
        )
        body = (
            f"<div id='swagger-ui' data-openapi='{escape(openapi)}'></div>\n"
            f"<script src='{SWAGGER_UI}/swagger-ui-bundle.js'></script>\n"
            "<script src='/docs/swagger-init.js'></script>\n"
        )
        return HTMLResponse(_page(f"{title} - API docs", head, body))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    def swagger_init() -> Response:
        return FileResponse(frontend / "docs" / "swagger-init.js", media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Response:
        if not (redoc_dir(frontend) / "redoc.standalone.js").is_file():
            return _setup_needed(openapi)
        # The standalone bundle renders every <redoc spec-url> element by itself. No web fonts
        # (FastAPI's page asks Google for them); no search, whose worker would be a blob: script.
        body = (
            f"<redoc spec-url='{escape(openapi)}' disable-search></redoc>\n"
            "<script src='/redoc/redoc-init.js'></script>\n"
            f"<script src='{REDOC}/redoc.standalone.js'></script>\n"
        )
        return HTMLResponse(_page(f"{title} - API reference", NO_ICON, body))

    @app.get("/redoc/redoc-init.js", include_in_schema=False)
    def redoc_init() -> Response:
        return FileResponse(frontend / "docs" / "redoc-init.js", media_type="text/javascript")

    app.mount(
        SWAGGER_UI, _Installed(directory=swagger_ui_dir(frontend), check_dir=False), name="swagger"
    )
    app.mount(REDOC, _Installed(directory=redoc_dir(frontend), check_dir=False), name="redoc")
