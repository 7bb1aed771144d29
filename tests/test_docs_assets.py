"""The API docs come from this server, under the strict Content-Security-Policy, and the OpenAPI
document describes the error answers (issue 12, item 9).

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) name only files of this server (from
``npm ci --prefix frontend``) and no inline script; a real headless Chromium renders both with
no console error (a CSP violation is one) and no request elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright

from command.middleware import CONTENT_SECURITY_POLICY
from command.routes import docs, wall
from tests.conftest import site_database
from tests.live_server import LiveServer
from tests.test_browser import CHROMIUM, NO_CHROMIUM, WAIT_MS, Watched, require

SWAGGER = docs.swagger_ui_dir(wall.FRONTEND) / "swagger-ui-bundle.js"
REDOC = docs.redoc_dir(wall.FRONTEND) / "redoc.standalone.js"
NO_PACKAGES = "'make test' installs them, or 'npm ci --prefix frontend'"
PAGES = ("/docs", "/redoc")
ERROR_STATUSES = {"400", "401", "403", "404", "409", "412", "413", "415", "422", "428", "429"}


def installed() -> None:
    require(
        SWAGGER.is_file() and REDOC.is_file(), "Swagger UI or ReDoc is not installed", NO_PACKAGES
    )


def referenced(page: str) -> list[str]:
    """Every script, style sheet and icon a page names."""
    return re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)='([^']*)'", page)


@pytest.mark.parametrize("path", PAGES)
def test_the_docs_pages_load_only_files_of_this_server(client: TestClient, path: str) -> None:
    installed()
    page = client.get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    urls = referenced(page.text)
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        if url.startswith("data:"):
            continue
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
        served = client.get(url)
        assert served.status_code == 200, (url, served.status_code)
    # No inline script: every <script> has a src and no body.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "cdn" not in page.text and "https://" not in page.text


def test_the_docs_pages_are_under_the_strict_policy(client: TestClient) -> None:
    swagger = client.get("/docs").headers["content-security-policy"]
    assert swagger == CONTENT_SECURITY_POLICY
    assert "unsafe" not in swagger
    # ReDoc writes its styles into <style> elements: that, and nothing more, is allowed.
    redoc = client.get("/redoc").headers["content-security-policy"]
    assert redoc == swagger.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    assert "script-src 'self';" in redoc


def test_without_the_npm_packages_the_pages_say_how_to_install_them(tmp_path: Path) -> None:
    app = FastAPI(docs_url=None, redoc_url=None)
    docs.mount(app, frontend=tmp_path)
    with TestClient(app) as bare:
        for path in (*PAGES, "/vendor/swagger-ui/swagger-ui-bundle.js"):
            answer = bare.get(path)
            assert answer.status_code == 503, path
            assert "npm ci --prefix frontend" in answer.text


# -- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(site_database(tmp_path_factory.mktemp("docs") / "docs.db")) as live:
        yield live


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    installed()
    require(CHROMIUM.is_file(), f"no Chromium at {CHROMIUM}", NO_CHROMIUM)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def watched(chromium: Browser) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        yield Watched(page)
    finally:
        context.close()


def operations(server: LiveServer, watched: Watched) -> int:
    document: dict[str, Any] = watched.page.request.get(f"{server.base}/openapi.json").json()
    return sum(
        1
        for item in document["paths"].values()
        for method in item
        # The OpenAPI operation methods (the OGC API answers OPTIONS: Part 4 clients ask it).
        if method in {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    )


def test_swagger_ui_renders_every_operation_with_no_console_error(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{server.base}/docs")
    expected = operations(server, watched)
    # The tags start folded (docExpansion "none": 137 operations unfolded at once stopped
    # Swagger UI after the first two tags, silently). Each tag unfolds to all its operations.
    tags = page.locator("#swagger-ui .opblock-tag")
    tags.first.wait_for()
    shown = 0
    for i in range(tags.count()):
        tag = tags.nth(i)
        tag.click()
        section = page.locator("#swagger-ui .opblock-tag-section").nth(i)
        section.locator(".opblock").first.wait_for()
        page.wait_for_timeout(50)
        shown += section.locator(".opblock").count()
        assert section.locator(".opblock-summary-path").first.is_visible()
        tag.click()
    assert shown == expected
    assert page.locator("#swagger-ui button.authorize").is_visible()  # the token goes here
    page.wait_for_timeout(300)  # late console errors (a refused style, a failed fetch)
    assert watched.errors == []
    assert watched.outside() == []


def test_redoc_renders_with_no_console_error_and_nothing_from_elsewhere(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{server.base}/redoc")
    expected = operations(server, watched)
    page.wait_for_function(
        "n => document.querySelectorAll('[data-section-id^=\"operation/\"]').length === n",
        arg=expected,
    )
    page.wait_for_timeout(300)
    assert watched.errors == []
    # Redocly's logo is not asked of its CDN (the policy would refuse it, noisily).
    assert watched.outside() == []


# -- the OpenAPI document describes the errors ----------------------------------------------------


def test_every_operation_describes_its_error_answers_as_problems(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(problem["properties"])
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ProblemError"}
    assert {"field", "reason"} <= set(schemas["ProblemError"]["properties"])
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is not what is sent
    described: dict[str, set[str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {s for s in responses if s.isdigit() and int(s) >= 400}
            assert "500" in errors, (method, path)
            for status in errors:
                content = responses[status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
                assert responses[status]["description"]
            if operation.get("security"):
                assert {"401", "403"} <= errors, (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)
            if "requestBody" in operation or operation.get("parameters"):
                assert "422" in errors, (method, path)
            described[f"{method.upper()} {path}"] = errors
    feature = "/api/sites/{site_id}/layers/{layer}/features/{feature_id}"
    assert {"409", "412", "428"} <= described[f"PUT {feature}"]
    assert "413" in described["POST /api/sites/{site_id}/layers/{layer}/import"]
    assert "429" in described["POST /api/auth/login"]
    assert {"401", "403"}.isdisjoint(described["POST /api/auth/login"])
    assert set().union(*described.values()) >= ERROR_STATUSES
