"""The printable review opened in a real browser (Debian's Chromium) from a file, as a reviewer
opens the download: every situation map is drawn on the site, and nothing is fetched."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright

from command.auth import Role
from command.review_maps import LEAFLET
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import sign_in
from tests.test_review import REVIEWS, drill_events, generate

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    for ready, missing in (
        (CHROMIUM.is_file(), f"no Chromium at {CHROMIUM} (scripts/chromium.sh)"),
        ((LEAFLET / "leaflet.js").is_file(), "Leaflet is not installed (npm ci --prefix frontend)"),
    ):
        if not ready:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true but {missing}")
            pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def test_the_downloaded_review_draws_its_maps_offline(
    command: TestClient, db: Database, clock: ManualClock, browser: Browser, tmp_path: Path
) -> None:
    incident, _ = drill_events(command, db, clock)
    generate(command, db, clock, incident)
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    answer = command.get(f"{REVIEWS}/{incident}/review.html", headers=controller)
    assert answer.status_code == 200, answer.text
    document = tmp_path / "review.html"
    document.write_text(answer.text, encoding="utf-8")

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    fetched: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(document.as_uri())
        page.wait_for_load_state("load")
        frames = page.frames[1:]
        assert len(frames) == 2  # activation, the wind change
        for frame in frames:
            frame.wait_for_function("() => document.readyState === 'complete'", polling=100)
            # Fitted to the site and its zones (a frame laid out late would show the world):
            # waited for, since a frame laid out late is fitted when it gets its size.
            frame.wait_for_function(
                "() => Object.keys(window).filter(k => k.startsWith('map_'))"
                ".every(k => window[k].getZoom() >= 12)",
                polling=100,
                timeout=5000,
            )
            zoom = frame.evaluate(
                "() => Object.keys(window).filter(k => k.startsWith('map_'))"
                ".map(k => window[k].getZoom())"
            )
            assert len(zoom) == 1 and zoom[0] >= 12, zoom
            layers = frame.evaluate(
                "() => Object.keys(window).filter(k => k.startsWith('geo_json_')).length"
            )
            assert layers >= 4  # basemap, zones, muster points, threat zones, site
        assert errors == []
        assert all(url.startswith(("file:", "data:", "about:")) for url in fetched), fetched
    finally:
        page.close()


def test_a_map_laid_out_after_its_load_is_still_fitted_to_the_site(
    command: TestClient, db: Database, clock: ManualClock, browser: Browser, tmp_path: Path
) -> None:
    """The printable review's frames may get their size only after their page has loaded
    (a busy machine lays them out late): the map still ends fitted to the site, not at the
    world at zoom 0 (a flaky CI failure, reproduced here by revealing the frame later)."""
    incident, _ = drill_events(command, db, clock)
    generate(command, db, clock, incident)
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    answer = command.get(f"{REVIEWS}/{incident}/review.html", headers=controller)
    assert answer.status_code == 200, answer.text
    # The review with its frames hidden: they load at size 0 and are shown afterwards.
    hidden = answer.text.replace("<iframe ", '<iframe style="display:none" ', 2)
    assert hidden.count('style="display:none"') == 2
    document = tmp_path / "review.html"
    document.write_text(hidden, encoding="utf-8")

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(document.as_uri())
        page.wait_for_load_state("load")
        frames = page.frames[1:]
        assert len(frames) == 2
        for frame in frames:
            frame.wait_for_function("() => document.readyState === 'complete'", polling=100)
        page.evaluate(
            "() => document.querySelectorAll('iframe').forEach(f => f.style.display = '')"
        )
        for frame in frames:
            frame.wait_for_function(
                "() => Object.keys(window).filter(k => k.startsWith('map_'))"
                ".every(k => window[k].getZoom() >= 12)",
                # Polled by time: an offscreen frame gets no animation frames to poll on.
                polling=100,
                timeout=5000,
            )
    finally:
        page.close()
