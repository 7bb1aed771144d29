"""The responder's phone app as served: its page, manifest, service worker and words (the app in
a browser, offline: tests/test_phone_browser.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from command.middleware import CONTENT_SECURITY_POLICY
from command.routes import phone
from command.routes.wall import FRONTEND
from tests.test_browser import require

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_the_page_manifest_and_worker_are_served(anonymous_client: TestClient) -> None:
    page = anonymous_client.get("/phone/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The strict policy of every page: nothing inline, nothing from elsewhere.
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<link rel="manifest" href="/phone/manifest.webmanifest">' in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # no CDN
    moved = anonymous_client.get("/phone", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "/phone/"

    manifest = anonymous_client.get("/phone/manifest.webmanifest")
    assert manifest.headers["content-type"] == "application/manifest+json"
    found = manifest.json()
    assert found["start_url"] == found["scope"] == found["id"] == "/phone/"
    assert found["display"] == "standalone" and found["name"] and found["short_name"]
    sizes = set()
    for icon in found["icons"]:
        answer = anonymous_client.get(icon["src"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        width, height = Image.open(io.BytesIO(answer.content)).size
        assert icon["sizes"] == f"{width}x{height}"
        sizes.add(width)
    assert {192, 512} <= sizes  # what installing asks for

    for module in ("phone.js", "phone-queue.js", "phone-words.js", "page.js"):
        answer = anonymous_client.get(f"/static/{module}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(
            "text/javascript"
        )
    worker = anonymous_client.get("/phone/sw.js")
    if phone.service_worker_path().is_file():
        assert worker.status_code == 200
        assert worker.headers["content-type"].startswith("text/javascript")
        assert worker.headers["cache-control"] == "no-cache"
    else:
        assert worker.status_code == 503 and "make frontend" in worker.text


def test_without_its_build_the_worker_says_how_to_make_it(tmp_path: Path) -> None:
    (tmp_path / "phone.html").write_text("<!doctype html><title>x</title>")
    app = FastAPI()
    phone.mount(app, tmp_path)
    with TestClient(app) as client:
        assert client.get("/phone/").status_code == 200
        answer = client.get("/phone/sw.js")
        assert answer.status_code == 503 and "make frontend" in answer.text


def test_the_built_worker_keeps_the_shell_and_loads_nothing_from_elsewhere() -> None:
    worker = phone.service_worker_path()
    require(worker.is_file(), "the phone app's worker is not built", "'make frontend'")
    text = worker.read_text()
    precached = set(re.findall(r'url:"([^"]+)",revision', text))
    shell = {
        "/phone/",
        "/phone/manifest.webmanifest",
        "/static/phone.js",
        "/static/phone-queue.js",
        "/static/phone-words.js",
        "/static/phone.css",
        "/static/page.js",
        "/vendor/leaflet/leaflet-src.esm.js",
        "/vendor/leaflet/leaflet.css",
    }
    assert shell <= precached, shell - precached
    # Workbox's runtime is inlined: no importScripts, no CDN, no other origin.
    assert "importScripts" not in text
    urls = re.findall(r"https?://[^\s\"'`]+", text)
    # Only the links to Workbox's docs its warnings print: nothing is loaded from them.
    assert all(u.startswith("https://bit.ly/wb-") for u in urls), urls
    # The API's reads: network first, into the cache the page reads "as of" from.
    assert "NetworkFirst" in text or "networkTimeoutSeconds" in text
    assert "rallypoint-phone-api" in text and "Rallypoint-Cached-At" in text


def words() -> dict[str, dict[str, str]]:
    """phone-words.js's table, read as JSON (keys quoted or bare, one entry per line or two)."""
    source = (FRONTEND / "phone-words.js").read_text()
    body = source[source.index("{", source.index("WORDS")) :].rstrip().rstrip(";")
    body = re.sub(r"^(\s*)([A-Za-z_][\w.]*):", r'\1"\2":', body, flags=re.M)  # bare keys
    body = re.sub(r"(\{|,)\s*en:", r'\1 "en":', body)
    body = re.sub(r",(\s*[}\]])", r"\1", body)  # trailing commas
    table: dict[str, dict[str, str]] = json.loads(body)
    return table


def test_every_word_is_in_both_languages_and_every_key_used_exists() -> None:
    table = words()
    assert len(table) > 50
    for key, entry in table.items():
        assert set(entry) == {"en", "zh-CN"}, key
        assert entry["en"].strip() and entry["zh-CN"].strip(), key
        assert set(PLACEHOLDER.findall(entry["en"])) == set(PLACEHOLDER.findall(entry["zh-CN"])), (
            key
        )
    script = (FRONTEND / "phone.js").read_text()
    page = (FRONTEND / "phone.html").read_text()
    used = set(re.findall(r'say\("([\w.]+)"', script)) | set(re.findall(r'data-w="([\w.]+)"', page))
    # Keys made from a status or an action: every status and action the app shows.
    for status in ("waiting", "ready", "acknowledged", "in_progress", "done", "skipped", "failed"):
        used.add(f"status.{status}")
    for action in ("acknowledge", "start", "complete", "skip", "fail"):
        used.add(f"move.{action}")
    assert used - set(table) == set()
