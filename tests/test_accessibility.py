"""axe-core (from npm, frontend/node_modules) run inside the real page in Chromium: the sign-in
page and the wall during an incident with an alarm up, in both languages, have no serious or
critical violation of WCAG 2.x A/AA. axe is put into the page through Playwright's evaluate (the
page's own Content-Security-Policy allows no inline script, and is left as it is)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from command.routes import wall
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID
from tests.live_server import LiveServer
from tests.test_browser import CL2_DETECTOR, Watched, open_wall, require, sign_in
from tests.test_wall import browser, new_page, server  # noqa: F401 (fixtures)

AXE = wall.FRONTEND / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = {"serious", "critical"}


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now, WCAG 2.x A and AA rules."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    result: dict[str, Any] = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
            resultTypes: ['violations'],
        })"""
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def serious(violations: list[dict[str, Any]]) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        for v in violations
        if v["impact"] in SERIOUS
    ]


@pytest.fixture
def axe_ready() -> None:
    require(AXE.is_file(), "axe-core is not installed", "'npm ci --prefix frontend'")


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:  # noqa: F811
    seen = new_page(browser)
    try:
        yield seen
    finally:
        seen.page.context.close()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_sign_in_page_has_no_serious_violation(
    axe_ready: None,
    server: LiveServer,  # noqa: F811
    watched: Watched,
    language: str,
) -> None:
    page = watched.page
    page.goto(f"{server.base}/")
    page.select_option("#language", language)
    page.wait_for_selector("#login-form")
    assert serious(axe_violations(page)) == []


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_wall_during_an_incident_has_no_serious_violation(
    axe_ready: None,
    server: LiveServer,  # noqa: F811
    watched: Watched,
    language: str,
) -> None:
    page = watched.page
    open_wall(page, server)
    page.select_option("#language", language)
    auth = sign_in(server)
    answer = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/incidents", json=CHLORINE_ACTIVATION, headers=auth
    )
    assert answer.status_code == 201, answer.text
    incident = answer.json()["incident"]["id"]
    httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/readings",
        json={"readings": [{"sensor_id": CL2_DETECTOR, "value": 2.0}]},
        headers=auth,
    )
    card = f".incident[data-incident='{incident}']"
    page.wait_for_selector(f"{card} li.step")
    page.wait_for_selector(f"#alarms .alarm[data-sensor='{CL2_DETECTOR}']")
    page.wait_for_selector("#kpis .kpi")
    found = serious(axe_violations(page))
    # Every tab as well: the one shown is checked with the page.
    for tab in ("people", "resources", "calltree", "log", "command"):
        page.click(f"{card} .tab[data-tab='{tab}']")
        found += [f"[{tab}] {v}" for v in serious(axe_violations(page))]
    assert found == []
    assert watched.errors == []
