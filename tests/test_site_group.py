"""A site server that keeps command through a WAN outage, and the group that gets its complete,
verifiable log afterwards (issue 18): two real ``rallypoint serve`` processes, the site's on
SQLite and the group's on PostGIS, and the site's forwarder (``rallypoint forward``) as a third
process, all on one clock file (``RALLYPOINT_CLOCK_FILE``).

The link is cut by stopping the forwarder mid-incident; the site goes on commanding for ten
minutes of test clock (steps, readings, deadlines firing); the forwarder started again, the
group catches up, and the rows of both databases are compared directly, column by column, and
both logs pass ``rallypoint audit verify`` run as the command line. A forged and a reordered
batch sent to the group with the site's own token are refused and change nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Text, cast, select

from command import replication
from command.auth import Role
from gis.storage.db import make_engine
from gis.storage.tables import EventRow
from plans.clock import FileClock
from tests.conftest import DEMO_ID, site_database
from tests.problems import assert_problem
from tests.processes import RALLYPOINT, ServerProcess, drop_database, postgis_demo_database
from tests.test_incidents import chlorine

SITE = f"/api/sites/{DEMO_ID}"
T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
WAIT_S = 90.0
CL2 = "S-057"  # a chlorine detector: warning 0.5, alarm 1, high alarm 3 ppm


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Link:
    """The site, the group and the forwarder between them, on one clock file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.clock = folder / "clock"
        self.now = T0
        FileClock.set(self.clock, T0)
        self.site_url = site_database(folder / "site.db", {"cmd-site": Role.COMMANDER})
        self.group_url = postgis_demo_database("site_group", {"group-viewer": Role.VIEWER})
        self.site_audit = self._audit("site")
        self.group_audit = self._audit("group")
        self.site = ServerProcess(
            self.site_url,
            folder / "site.log",
            name="site",
            clock_file=self.clock,
            **self.site_audit,
        )
        self.group = ServerProcess(
            self.group_url,
            folder / "group.log",
            name="group",
            clock_file=self.clock,
            **self.group_audit,
        )
        made = self.cli(
            self.group_url, self.group_audit, "replica", "add", DEMO_ID, "--owner", "site-a"
        )
        self.token = made.stdout.strip().splitlines()[-1]
        self.forwarder: subprocess.Popen[bytes] | None = None

    def _audit(self, name: str) -> dict[str, str]:
        return {
            "audit_key": str(self.folder / f"{name}-key.pem"),
            "audit_checkpoints": str(self.folder / f"{name}-checkpoints.jsonl"),
        }

    def env(self, url: str, audit: dict[str, str], **more: str) -> dict[str, str]:
        settings = {"database_url": url, "clock_file": str(self.clock), **audit, **more}
        return {**os.environ, **{f"RALLYPOINT_{k.upper()}": v for k, v in settings.items()}}

    def cli(self, url: str, audit: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(RALLYPOINT), *args],
            env=self.env(url, audit),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def start_forwarder(self) -> None:
        env = self.env(
            self.site_url,
            self.site_audit,
            group_url=self.group.base,
            group_token=self.token,
            forward_every_s="0.3",
            log_level="INFO",
        )
        with (self.folder / "forwarder.log").open("ab") as out:
            self.forwarder = subprocess.Popen(
                [str(RALLYPOINT), "forward", "--site", DEMO_ID],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.send_signal(signal.SIGTERM)
            try:
                self.forwarder.wait(30)
            except subprocess.TimeoutExpired:
                self.forwarder.kill()
                self.forwarder.wait(30)
            self.forwarder = None

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        FileClock.set(self.clock, self.now)

    def stop(self) -> None:
        self.stop_forwarder()
        self.site.stop()
        self.group.stop()


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    made = Link(tmp_path)
    try:
        made.site.start(wait=False)
        made.group.start(wait=False)
        made.site.wait_ready()
        made.group.wait_ready()
        yield made
    finally:
        made.stop()
        drop_database(made.group_url)


def head_seq(server: ServerProcess, auth: dict[str, str]) -> int:
    answer = httpx.get(f"{server.base}/api/group/overview", headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    [site] = [s for s in answer.json()["sites"] if s["id"] == DEMO_ID]
    return int(site["seq"])


def group_link(link: Link, auth: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(f"{link.group.base}/api/group/overview", headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    [site] = [s for s in answer.json()["sites"] if s["id"] == DEMO_ID]
    assert "link" in site, site
    return dict(site["link"]) | {"incidents": site["incidents"]}


def rows(url: str) -> list[tuple[Any, ...]]:
    """The site's events as stored, read straight from the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [
                tuple(r)
                for r in connection.execute(
                    select(
                        EventRow.site_id,
                        EventRow.seq,
                        EventRow.at,
                        EventRow.type,
                        EventRow.actor,
                        EventRow.incident_id,
                        cast(EventRow.data, Text),
                        EventRow.prev_hash,
                        EventRow.hash,
                    )
                    .where(EventRow.site_id == DEMO_ID)
                    .order_by(EventRow.seq)
                )
            ]
    finally:
        engine.dispose()


def test_the_group_catches_up_after_an_outage_with_the_sites_log_as_it_is(link: Link) -> None:
    site_auth = link.site.sign_in("cmd-site")
    viewer = link.group.sign_in("group-viewer")
    link.start_forwarder()
    answer = httpx.post(
        f"{link.site.base}{SITE}/incidents", json=chlorine(), headers=site_auth, timeout=60
    )
    assert answer.status_code == 201, answer.text
    incident = answer.json()["incident"]["id"]
    steps = [s["id"] for s in answer.json()["plan"]["steps"] if s["status"] == "ready"]

    # Forwarded: the group holds the site's log, and shows the incident and the link.
    first = head_seq(link.site, site_auth)
    wait_for(lambda: group_link(link, viewer)["acked_seq"] >= first, "the first events forwarded")
    shown = group_link(link, viewer)
    assert shown["state"] in ("connected", "behind"), shown
    wait_for(
        lambda: any(i["id"] == incident for i in group_link(link, viewer)["incidents"]),
        "the group wall to show the site's incident",
    )

    # The link is cut mid-incident: the site commands on for ten minutes of its clock.
    link.stop_forwarder()
    cut_at = group_link(link, viewer)["acked_seq"]
    done_steps = 0
    for minute in range(10):
        for half in range(2):
            link.advance(30)  # deadlines come due: the site's ticker fires them
            value = 1.4 if (minute + half) % 2 else 0.2  # in and out of the alarm tier
            reading = httpx.post(
                f"{link.site.base}{SITE}/readings",
                json={"readings": [{"sensor_id": CL2, "value": value}]},
                headers=site_auth,
                timeout=60,
            )
            assert reading.status_code == 200, reading.text
        if done_steps < len(steps):
            step = httpx.post(
                f"{link.site.base}{SITE}/incidents/{incident}/steps/{steps[done_steps]}/acknowledge",
                json={},
                headers=site_auth,
                timeout=60,
            )
            assert step.status_code == 200, step.text
            done_steps += 1
    wait_for(
        lambda: any(r[3] == "plan.step.overdue" for r in rows(link.site_url)),
        "a deadline fired at the site during the outage",
    )
    during = group_link(link, viewer)
    site_head = head_seq(link.site, site_auth)
    assert during["state"] == "cut" and during["acked_seq"] == cut_at, during
    assert during["since_ack_s"] >= 600, during
    assert site_head > cut_at + 20, (site_head, cut_at)
    assert rows(link.group_url)[-1][1] == cut_at  # nothing reached the group meanwhile

    # The link is back: the group catches up with nothing lost or twice.
    link.start_forwarder()
    wait_for(lambda: group_link(link, viewer)["acked_seq"] >= site_head, "the group to catch up")
    wait_for(lambda: group_link(link, viewer)["state"] == "connected", "the link connected")

    # Forged and reordered batches, sent with the site's own token, are refused.
    before_group = rows(link.group_url)
    wire = [
        {
            "seq": r[1],
            "at": r[2].isoformat(),
            "type": r[3],
            "actor": r[4],
            "incident_id": r[5],
            "data": json.loads(r[6]),
            "prev_hash": r[7],
            "hash": r[8],
        }
        for r in rows(link.site_url)[-4:]
    ]
    forged = [*wire[:2], {**wire[2], "actor": "someone else"}, wire[3]]
    reordered = [wire[0], wire[2], wire[1], wire[3]]
    url = f"{link.group.base}/api/replication/sites/{DEMO_ID}/log"
    auth = {"Authorization": f"Bearer {link.token}"}
    body = assert_problem(httpx.post(url, json={"events": forged}, headers=auth, timeout=60), 422)
    assert (body["reason"], body["seq"]) == ("forged", wire[2]["seq"])
    body = assert_problem(
        httpx.post(url, json={"events": reordered}, headers=auth, timeout=60), 422
    )
    assert (body["reason"], body["seq"]) == ("order", wire[1]["seq"])
    fork = replication.to_wire(
        replication.from_wire(
            DEMO_ID, 0, {**wire[3], "seq": wire[3]["seq"] + 1, "prev_hash": "e" * 64}
        )
    )
    body = assert_problem(httpx.post(url, json={"events": [fork]}, headers=auth, timeout=60), 422)
    assert body["reason"] == "forged"  # its content no longer matches its hash
    assert rows(link.group_url) == before_group
    assert "REPLICATION REFUSED" in link.group.output()

    # The site stopped (its last events logged, its heads signed), the forwarder sends the
    # rest; then the group stops: the logs, row for row, and both audits.
    link.site.stop()
    last = len(rows(link.site_url))
    wait_for(lambda: group_link(link, viewer)["acked_seq"] == last, "the last events forwarded")
    link.stop()
    site_rows, group_rows = rows(link.site_url), rows(link.group_url)
    assert len(site_rows) == last >= site_head >= cut_at + 20
    assert [r[1] for r in group_rows] == list(range(1, len(site_rows) + 1))
    assert group_rows == site_rows
    kinds = {r[3] for r in site_rows}
    assert {"plan.step.acknowledged", "plan.step.overdue", "incident.activated"} <= kinds, kinds
    said = link.cli(link.site_url, link.site_audit, "forward", "--status", "--site", DEMO_ID)
    assert f"acknowledged up to {last} " in said.stdout and "ERROR" not in said.stdout, said
    for url, audit in ((link.site_url, link.site_audit), (link.group_url, link.group_audit)):
        verified = link.cli(url, audit, "audit", "verify", "--site", DEMO_ID)
        assert f"event log intact: {len(site_rows)} events" in verified.stdout, verified
