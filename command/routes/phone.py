"""The responder's phone app (docs/offline.md, "The responder's phone"): a PWA at ``/phone/``.

The page, its manifest and its service worker are served under ``/phone/``: the worker's scope
is ``/phone/``, so it controls the page, and every request that page makes (its modules under
``/static``, Leaflet under ``/vendor/leaflet``, the API) goes through it. The worker is built by
Workbox from npm (``frontend/phone-build.mjs``, run by ``make frontend``) into
``frontend/build/phone-sw.js``; until it is built, ``/phone/sw.js`` answers 503 saying how, and
the page works online without it. What the app sends (steps, notes with a photo, call-out
answers) goes to the API's own routes, with the queued-action headers of docs/offline.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response

from command.routes.wall import FRONTEND, JAVASCRIPT

SW_HINT = (
    "The phone app's service worker is not built: run 'make frontend' (npm ci, then "
    "'node frontend/phone-build.mjs'). The page works online meanwhile."
)
MANIFEST = "application/manifest+json"


def service_worker_path(frontend: Path = FRONTEND) -> Path:
    """Where ``make frontend`` writes the service worker Workbox generated."""
    return frontend / "build" / "phone-sw.js"


def mount(app: FastAPI, frontend: Path = FRONTEND) -> None:
    """The phone app at ``/phone/``: its page, manifest and service worker (no sign-in: the
    page signs in itself, and holds no data until it has)."""

    @app.get("/phone", include_in_schema=False)
    def phone_redirect() -> Response:
        return RedirectResponse("/phone/", status_code=308)

    @app.get("/phone/", include_in_schema=False)
    def phone_page() -> Response:
        return FileResponse(frontend / "phone.html", headers={"Cache-Control": "no-cache"})

    @app.get("/phone/manifest.webmanifest", include_in_schema=False)
    def phone_manifest() -> Response:
        path = frontend / "phone.webmanifest"
        return FileResponse(path, media_type=MANIFEST, headers={"Cache-Control": "no-cache"})

    @app.get("/phone/sw.js", include_in_schema=False)
    def phone_worker() -> Response:
        path = service_worker_path(frontend)
        if not path.is_file():
            return Response(SW_HINT, status_code=503, media_type="text/plain")
        # Never from the HTTP cache: a new build reaches the phones on their next visit.
        return FileResponse(path, media_type=JAVASCRIPT, headers={"Cache-Control": "no-cache"})
