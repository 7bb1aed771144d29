"""The README's screenshots of the map wall (docs/img/), taken in Chromium at 1920x1080 from the
real server on the demo site: the surroundings before anything happens; the chlorine incident
at L2 with its detector's alarm up and some people arrived; the wind turning; and L3, in Chinese.

Run: ``.venv/bin/python scripts/wall_screenshots.py [--out docs/img]`` (needs what ``make test``
sets up: the dev install, ``npm ci --prefix frontend`` and Debian's Chromium).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright
from shapely.geometry import shape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from command.auth import Role  # noqa: E402
from tests.conftest import DEMO_ID, TEST_PASSWORD, site_database, zone_centroid  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

COMMANDER = "chief-wang"
SITE = f"/api/sites/{DEMO_ID}"
WIND_STATION = "S-005"
CL2_DETECTOR = "S-062"


def post(server: LiveServer, path: str, auth: dict[str, str], body: Any = None) -> Any:
    answer = httpx.post(f"{server.base}{SITE}{path}", json=body, headers=auth, timeout=30)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def wait_quiet(page: Page, ms: int = 1500) -> None:
    page.wait_for_selector("#status[data-state='live']")
    page.wait_for_timeout(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = site_database(Path(tmp) / "wall.db", {COMMANDER: Role.COMMANDER})
        with LiveServer(url, heartbeat_s=5.0) as server, sync_playwright() as playwright:
            login = httpx.post(
                f"{server.base}/api/auth/login",
                json={"username": COMMANDER, "password": TEST_PASSWORD},
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=["--autoplay-policy=no-user-gesture-required"],
            )
            page = browser.new_page(viewport={"width": 1920, "height": 1080}, locale="en-GB")
            page.goto(f"{server.base}/")
            page.fill("#username", COMMANDER)
            page.fill("#password", TEST_PASSWORD)
            page.click("#login-submit")
            page.click(f"#site-list button[data-site='{DEMO_ID}']")
            wind = {"readings": [{"sensor_id": WIND_STATION, "value": 3.0, "direction_deg": 45}]}
            post(server, "/readings", auth, wind)
            wait_quiet(page)
            # The surroundings: the site, the expressway, the river, the school and the village.
            page.evaluate(
                "() => document.querySelector('#map').leafletMap"
                ".setView([30.714, 121.345], 14, { animate: false })"
            )
            page.mouse.move(1900, 1070)
            wait_quiet(page, 800)
            page.screenshot(path=str(args.out / "wall-surroundings.png"))
            page.reload()  # a view set by hand holds the framing off for a minute: start afresh
            wait_quiet(page, 500)

            # The chlorine leak at L2, from the plan's design release under the station's wind;
            # its detector alarms; people walk, some have arrived.
            activation = {
                "plan_id": "chlorine-leak",
                "level": "L2",
                "location": {"type": "Point", "coordinates": zone_centroid("Z-027")},
                "hazard": {"model": "plan"},
            }
            picture = post(server, "/incidents", auth, activation)
            post(
                server, "/readings", auth, {"readings": [{"sensor_id": CL2_DETECTOR, "value": 2.0}]}
            )
            zones = httpx.get(f"{server.base}{SITE}/layers/zones", headers=auth).json()
            musters = {str(f["id"]): shape(f["geometry"]) for f in zones["features"]}
            moving = [p for p in picture["evacuation"]["people"] if p["muster"]][:12]
            arrived = [
                {
                    "person_id": p["id"],
                    "lon": musters[p["muster"]].representative_point().x,
                    "lat": musters[p["muster"]].representative_point().y,
                }
                for p in moving
            ]
            post(server, "/positions", auth, {"positions": arrived})
            wait_quiet(page, 2500)
            page.screenshot(path=str(args.out / "wall-l2.png"))

            # The wind turns: the plume is drawn again, people rerouted; the alarm acknowledged.
            post(server, f"/sensors/{CL2_DETECTOR}/acknowledge", auth, {"note": "seen on CCTV"})
            turned = {"readings": [{"sensor_id": WIND_STATION, "value": 4.0, "direction_deg": 90}]}
            post(server, "/readings", auth, turned)
            wait_quiet(page, 2500)
            page.screenshot(path=str(args.out / "wall-wind-change.png"))

            # L3, in Chinese: the plan's own Chinese titles, steps and roles.
            incident = picture["incident"]["id"]
            post(
                server,
                f"/incidents/{incident}/escalate",
                auth,
                {"reason": "plume reaches the village"},
            )
            page.select_option("#language", "zh-CN")
            wait_quiet(page, 2500)
            page.screenshot(path=str(args.out / "wall-l3-zh.png"))
            browser.close()
    for name in ("wall-surroundings", "wall-l2", "wall-wind-change", "wall-l3-zh"):
        print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
