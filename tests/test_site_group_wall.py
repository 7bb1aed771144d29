"""The group wall shows each replicated site's link (issue 18), in a real browser (Chromium)
against a real server: a site whose forwarder has sent part of its log is "behind" by the
events still to come, with the seconds since the last acknowledgement; a site whose forwarder
has not called for longer than the cut-off is "CUT"; a site that is not replicated shows no
link. English and Chinese. The server's clock is a clock file the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from command import replication
from command.auth import Role
from command.routes.sites import SITE_EXAMPLE
from gis.sites import create_site
from gis.storage.db import Database, make_engine
from plans.clock import FileClock
from tests.conftest import DEMO_ID, TEST_PASSWORD, TEST_START, site_database
from tests.live_server import LiveServer
from tests.test_browser import WAIT_MS, Watched, chromium
from tests.test_replication import chain

PLANT = "north-works"
VIEWER = "group-watcher"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_the_group_wall_shows_a_sites_link_behind_then_cut(
    browser: Browser, tmp_path: Path
) -> None:
    clock = tmp_path / "clock"
    FileClock.set(clock, TEST_START)
    url = site_database(tmp_path / "g.db", {VIEWER: Role.VIEWER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            create_site(session, {**SITE_EXAMPLE, "id": PLANT}, actor="test")
            replication.add_replica(session, PLANT, "plant-north", actor="test", now=TEST_START)
            token = replication.issue_replicator_token(session, PLANT, "north", TEST_START)
    finally:
        engine.dispose()
    with LiveServer(url, clock_file=clock) as server:
        forwarder = {"Authorization": f"Bearer {token}"}
        sent = [replication.to_wire(e) for e in chain(4, site=PLANT)]
        answer = httpx.post(
            f"{server.base}/api/replication/sites/{PLANT}/log",
            json={"events": sent, "site_seq": 10},
            headers=forwarder,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        FileClock.set(clock, TEST_START + timedelta(seconds=12))
        login = httpx.post(
            f"{server.base}/api/auth/login", json={"username": VIEWER, "password": TEST_PASSWORD}
        )
        signed = login.json()["access_token"]
        context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
        context.add_init_script(
            f"sessionStorage.setItem('rallypoint.token', {signed!r});"
            "localStorage.setItem('rallypoint.language', 'en');"
        )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        seen = Watched(page)
        try:
            page.goto(f"{server.base}/static/group.html")
            page.wait_for_selector("body[data-ready='true']")
            link = page.locator(f"#tiles > li[data-site='{PLANT}'] .link")
            assert link.get_attribute("data-link") == "behind"
            assert link.inner_text() == (
                "Link to the site: 6 events behind · last acknowledged 12 s ago"
            )
            assert page.locator(f"#tiles > li[data-site='{DEMO_ID}'] .link").count() == 0
            page.select_option("#language", "zh-CN")
            assert link.inner_text() == "与厂区链路：落后 6 条事件 · 上次确认 12 秒前"
            # No call from the site's forwarder for a minute: the link is cut (next poll).
            FileClock.set(clock, TEST_START + timedelta(seconds=72))
            page.wait_for_selector(f"#tiles > li[data-site='{PLANT}'] .link[data-link='cut']")
            assert link.inner_text() == "与厂区链路：已中断 · 上次确认 72 秒前"
            assert link.evaluate("e => getComputedStyle(e).fontWeight") == "700"
            assert not seen.errors, seen.errors
        finally:
            context.close()
