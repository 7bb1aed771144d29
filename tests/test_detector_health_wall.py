"""The wall shows detectors overdue for calibration (a real server and Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from command.auth import Role
from tests.conftest import DEMO_ID, site_database
from tests.live_server import LiveServer
from tests.test_browser import (
    COMMANDER,
    WAIT_MS,
    Watched,
    chromium,
    open_wall,
    sign_in,
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_an_overdue_detector_is_flagged_on_the_wall(browser: Browser, tmp_path: Path) -> None:
    url = site_database(tmp_path / "health.db", {COMMANDER: Role.COMMANDER})
    with LiveServer(url) as server:
        auth = sign_in(server)
        record = {
            "kind": "calibration",
            "at": "2024-11-02T09:00:00+08:00",  # two years ago: a yearly calibration is overdue
            "by": "Li Wei",
            "result": "pass",
            "gas": "Cl2",
            "concentration": 5,
            "unit": "ppm",
        }
        answer = httpx.post(
            f"{server.base}/api/sites/{DEMO_ID}/sensors/S-057/maintenance-records",
            json=record,
            headers=auth,
        )
        assert answer.status_code == 201, answer.text
        context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        watched = Watched(page)
        try:
            open_wall(page, server)
            row = "#detector-health li[data-sensor='S-057']"
            page.wait_for_selector(f"{row} [data-flag='overdue_calibration']")
            assert page.is_visible("#detector-health")
            assert page.inner_text("#detector-health-count") == "1"
            text = page.inner_text(row)
            assert "calibration overdue (due 2025-11-02)" in text, text
            assert "bump test overdue" in text, text  # its calibration was the last gas on it
            page.select_option("#language", "zh-CN")
            page.wait_for_function(
                "() => document.querySelector(\"#detector-health li[data-sensor='S-057']\")"
                "?.textContent.includes('标定逾期')"
            )
            # Calibrated today: the flags go from the wall, following the sensor.health event.
            done = {**record, "at": datetime.now(UTC).isoformat()}
            answer = httpx.post(
                f"{server.base}/api/sites/{DEMO_ID}/sensors/S-057/maintenance-records",
                json=done,
                headers=auth,
            )
            assert answer.status_code == 201 and answer.json()["health"] == [], answer.text
            page.wait_for_selector("#detector-health", state="hidden")
            assert watched.errors == []
        finally:
            context.close()
