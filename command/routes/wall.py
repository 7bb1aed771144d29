"""The map wall: the browser page in ``frontend/``, and Leaflet from its npm install.

Everything the page loads comes from this server: ``/`` (the page), ``/static/...`` (its own
files: ``main.js`` and the ES modules it imports, no build step), ``/vendor/leaflet/...``
(Leaflet's ``dist`` folder, from ``npm ci --prefix frontend``) and ``/vendor/geoman/...`` (the
Leaflet-Geoman editing plugin's package: its ``dist`` and its ``LICENSE``, loaded by planners'
walls only), never from a CDN. Until the npm packages are installed, ``/`` and ``/vendor/...``
answer 503 with how to install them.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
SETUP_HINT = (
    "The map wall's browser packages (Leaflet) are not installed: run 'make run', or "
    "'npm ci --prefix frontend', then reload. The API works meanwhile (see /docs)."
)
JAVASCRIPT = "text/javascript; charset=utf-8"


def leaflet_dir(frontend: Path) -> Path:
    return frontend / "node_modules" / "leaflet" / "dist"


def geoman_dir(frontend: Path) -> Path:
    """The editing plugin's package folder (``dist/`` and ``LICENSE``, MIT)."""
    return frontend / "node_modules" / "@geoman-io" / "leaflet-geoman-free"


class _Installed(StaticFiles):
    """Static files whose folder may appear only after the server started (``npm ci``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            await PlainTextResponse(SETUP_HINT, status_code=503)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _PageFiles(StaticFiles):
    """The page's own files: the npm install and the package files are not part of it."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if Path(path).parts[:1] in (("node_modules",), ("package.json",), ("package-lock.json",)):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The page's modules as JavaScript, whatever the host's MIME table says: a browser runs
        a ``<script type="module">`` (under ``nosniff``, any script) only with a JavaScript type."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".js") and "content-type" in response.headers:
            response.headers["content-type"] = JAVASCRIPT
        return response


def mount(app: FastAPI, frontend: Path = FRONTEND) -> None:
    """Serve the map wall from ``frontend`` at ``/``, ``/static``, ``/vendor/leaflet`` and
    ``/vendor/geoman``."""

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        if not (leaflet_dir(frontend) / "leaflet.js").is_file():
            page = f"<!doctype html><title>Rallypoint: setup needed</title><p>{SETUP_HINT}</p>"
            return HTMLResponse(page, status_code=503)
        return FileResponse(frontend / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", _PageFiles(directory=frontend, check_dir=False), name="wall")
    app.mount(
        "/vendor/leaflet",
        _Installed(directory=leaflet_dir(frontend), check_dir=False),
        name="leaflet",
    )
    app.mount(
        "/vendor/geoman",
        _Installed(directory=geoman_dir(frontend), check_dir=False),
        name="geoman",
    )
