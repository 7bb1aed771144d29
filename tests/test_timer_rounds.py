"""The leader's round of timers each second: one kind that fails (a fault, or a write to a
site whose log another server owns) stops neither the other kinds nor the next round."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from command.post import CommandPost
from gis.errors import OwnedElsewhere


def test_a_failing_kind_of_timer_stops_neither_the_others_nor_the_next_round(
    command: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    ran: list[str] = []

    def refused() -> list[Any]:
        ran.append("fences")
        raise OwnedElsewhere("site 'demo-works' is the site server's to write")

    def kind(name: str) -> Any:
        def fire() -> list[Any]:
            ran.append(name)
            return []

        return fire

    monkeypatch.setattr(post.fences, "tick", refused)
    monkeypatch.setattr(post, "watch_wristbands", kind("wristbands"))
    monkeypatch.setattr(post.health, "tick", kind("health"))
    with caplog.at_level(logging.ERROR, logger="command.post"):
        assert post.tick() == []
        assert post.tick() == []
    assert ran == ["fences", "wristbands", "health"] * 2
    failed = [r for r in caplog.records if "fences timers failed" in r.getMessage()]
    assert len(failed) == 2
