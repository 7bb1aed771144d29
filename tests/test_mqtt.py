"""Industrial ingestion over MQTT (command/mqtt.py), against a real Mosquitto of the module's own
(tests/mosquitto.py), gateways played by Mosquitto's own ``mosquitto_pub``: readings raise the
same events as REST, positions move people, bad messages go to the dead letters with their
reason, and a broker restart or a Rallypoint restart in the middle loses nothing the broker
acknowledged to a gateway and takes nothing twice. On SQLite and PostGIS (the ``db`` fixture)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from command import events as event_log
from command.app import create_app
from command.auth import Role
from command.hub import Hub
from command.mqtt import Broker as Target
from command.mqtt import MqttIngest
from command.post import CommandPost
from command.settings import Settings
from command.site_model import SiteModels
from gis.errors import Recovering
from gis.storage.db import Database
from plans.clock import ManualClock
from plans.store import load_plan_files
from tests.conftest import DEMO_ID, DEMO_PLANS, sign_in
from tests.mosquitto import Broker, MachineBroker, require_mosquitto
from tests.test_incidents import activate

SITE = f"/api/sites/{DEMO_ID}"
TOPIC = f"rallypoint/{DEMO_ID}"
CL2, CL2_REST = "S-057", "S-058"  # chlorine detectors: warning 0.5, alarm 1, high alarm 3 ppm
H2S = "S-001"  # warning 5, alarm 10, high alarm 20 ppm
LEL = "S-010"  # %LEL: 0 to 100 is possible
MUSTER = ("Z-033", (121.34490975, 30.7184466))
WAIT_S = 30.0  # the most a message may take to come through (a loaded machine)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    require_mosquitto()
    running = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield running
    finally:
        running.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def rallypoint(
    db: Database, clock: ManualClock, broker: Broker, client_id: str, **settings: Any
) -> Iterator[tuple[TestClient, MqttIngest]]:
    """The app, subscribed to ``broker`` as ``client_id``, and a commander's client of it."""
    app = create_app(
        Settings(
            database_url=str(db.engine.url),
            mqtt_url=broker.url,
            mqtt_client_id=client_id,
            mqtt_backoff_initial_s=0.05,
            mqtt_backoff_max_s=0.4,
            **settings,
        ),
        database=db,
        clock=clock,
        ticking=False,
    )
    with TestClient(app) as client:
        client.headers.update(sign_in(db, "cmd-mqtt", [Role.COMMANDER]))
        ingest: MqttIngest = app.state.mqtt
        wait_for(ingest.subscribed.is_set, "the subscription")
        yield client, ingest


@pytest.fixture
def plans(db: Database) -> None:
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")


def readings(*rows: tuple[str, float], **extra: Any) -> str:
    return json.dumps({"readings": [{"sensor_id": s, "value": v} for s, v in rows], **extra})


def site_events(client: TestClient, kind: str) -> list[dict[str, Any]]:
    page = client.get(f"{SITE}/events", params={"limit": 1000})
    assert page.status_code == 200, page.text
    return [e for e in page.json()["events"] if e["type"] == kind]


def new_id() -> str:
    return f"rp-test-{uuid.uuid4().hex[:12]}"


def test_mqtt_is_off_unless_a_broker_is_configured(db: Database, clock: ManualClock) -> None:
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app):
        assert app.state.mqtt is None


def test_readings_raise_the_same_events_as_rest(
    db: Database, clock: ManualClock, broker: Broker, plans: None
) -> None:
    with rallypoint(db, clock, broker, new_id()) as (client, ingest):
        broker.publish(f"{TOPIC}/readings/gw-7", readings((CL2, 1.4)))
        wait_for(lambda: ingest.taken == 1, "the MQTT reading")
        rest = client.post(
            f"{SITE}/readings", json={"readings": [{"sensor_id": CL2_REST, "value": 1.4}]}
        )
        assert rest.status_code == 200, rest.text
        # The gateway may name itself in the body too (it wins over the topic's).
        broker.publish(f"{TOPIC}/readings", readings((CL2, 0.0), gateway="gw-9"))
        wait_for(lambda: ingest.taken == 2, "the second MQTT reading")
        states = site_events(client, "sensor.state")
        proposals = site_events(client, "plan.proposed")
        state = {s["id"]: s for s in client.get(f"{SITE}/sensors/state").json()["sensors"]}
    by_mqtt = [e for e in states if e["data"]["sensor_id"] == CL2]
    by_rest = [e for e in states if e["data"]["sensor_id"] == CL2_REST]
    assert [e["actor"] for e in by_mqtt] == ["mqtt:gw-7", "mqtt:gw-9"]
    assert [(e["data"]["from"], e["data"]["to"]) for e in by_mqtt] == [
        (None, "alarm"),
        ("alarm", None),
    ]
    assert len(by_rest) == 1

    def same(event: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in event["data"].items() if k != "sensor_id"}

    assert same(by_mqtt[0]) == same(by_rest[0])
    # The same plan proposed by both paths, as the REST route does.
    proposed = {p["data"]["sensor_id"]: p["data"]["plans"] for p in proposals}
    assert proposed[CL2] == proposed[CL2_REST] and "chlorine-leak" in proposed[CL2]
    assert state[CL2]["tier"] is None and state[CL2]["last_reading"]["by"] == "mqtt:gw-9"


def test_the_machines_broker_started_by_make_test_carries_readings(
    db: Database, clock: ManualClock, plans: None
) -> None:
    """The broker that `make mosquitto` (so .ci/run) starts from the Debian package when the
    machine has none: Rallypoint subscribes to it, Debian's mosquitto_pub publishes a reading
    under a topic prefix of this test's own (the broker is shared), and the reading is taken."""
    require_mosquitto()
    machine = MachineBroker()
    prefix = new_id()
    with rallypoint(db, clock, machine, new_id(), mqtt_topic_prefix=prefix) as (client, ingest):
        machine.publish(f"{prefix}/{DEMO_ID}/readings/gw-1", readings((CL2, 1.4)))
        wait_for(lambda: ingest.taken == 1, "the reading through the machine's broker")
        [state] = site_events(client, "sensor.state")
    assert (state["actor"], state["data"]["to"]) == ("mqtt:gw-1", "alarm")


def test_positions_over_mqtt_move_people(
    db: Database, clock: ManualClock, broker: Broker, plans: None
) -> None:
    muster, (lon, lat) = MUSTER
    with rallypoint(db, clock, broker, new_id()) as (client, ingest):
        activate(client)
        incident = client.get(f"{SITE}/incidents").json()["incidents"][0]["id"]
        before = client.get(f"{SITE}/incidents/{incident}").json()["headcount"]["at"][muster]
        body = {
            "positions": [
                {"person_id": "P-0001", "lon": lon, "lat": lat},
                {"person_id": "P-0002", "lon": lon, "lat": lat},
            ]
        }
        broker.publish(f"{TOPIC}/positions/tags-1", json.dumps(body))
        wait_for(lambda: ingest.taken == 1, "the positions")
        after = client.get(f"{SITE}/incidents/{incident}").json()["headcount"]["at"][muster]
        seen = client.app.state.post.positions_now(DEMO_ID)["positions"]  # type: ignore[attr-defined]
    assert after >= before + 1
    assert seen["P-0001"] == [lon, lat] and seen["P-0002"] == [lon, lat]


def test_bad_messages_go_to_the_dead_letters_with_the_reason(
    db: Database, clock: ManualClock, broker: Broker
) -> None:
    letters = new_id()
    broker.register(letters, "rallypoint/+/dead-letter")
    client_id = new_id()
    bad: list[tuple[str, str | bytes, str | None]] = [
        (f"{TOPIC}/readings", b"{not json", "payload"),
        (f"{TOPIC}/readings", readings((CL2, "high")), "readings[0].value"),  # type: ignore[arg-type]  # a bad value
        (f"{TOPIC}/readings", readings(("S-999", 1.0)), "readings.sensor_id"),
        ("rallypoint/nowhere/readings", readings((CL2, 1.0)), None),
        (f"{TOPIC}/readings", readings((LEL, 150.0)), "readings[0].value"),
        (f"{TOPIC}/readings", readings((CL2, 1.0), pad="x" * 3000), "payload"),
        (f"{TOPIC}/readings", readings((CL2, 1.0), drill="D-1"), "drill"),
        (
            f"{TOPIC}/positions",
            json.dumps({"positions": [{"person_id": "P-0001"}]}),
            "positions[0]",
        ),
        (f"{TOPIC}/readings/bad gateway", readings((CL2, 1.0)), "topic"),
        (f"{TOPIC}/readings", b"[1, 2]", "payload"),
        (f"{TOPIC}/readings", b'{"readings": [{"sensor_id": "S-057", "value": NaN}]}', None),
    ]
    with rallypoint(db, clock, broker, client_id, mqtt_max_payload_bytes=2048) as (client, ingest):
        for topic, payload, _ in bad:
            broker.publish(topic, payload)
        broker.publish(f"{TOPIC}/readings", readings((CL2, 1.4)))  # and a good one after them
        wait_for(lambda: ingest.refused == len(bad) and ingest.taken == 1, "every message")
        states = site_events(client, "sensor.state")
    # Nothing of the bad ones was taken: only the good reading is an event.
    assert [(e["data"]["sensor_id"], e["data"]["to"]) for e in states] == [(CL2, "alarm")]
    got = broker.collect(letters, "rallypoint/+/dead-letter", len(bad))
    assert len(got) == len(bad), got
    for (topic, payload, field), (where, text) in zip(bad, got, strict=True):
        letter = json.loads(text)
        site = topic.split("/")[1]
        assert where == f"rallypoint/{site}/dead-letter"
        assert letter["topic"] == topic and letter["reason"]
        raw = payload if isinstance(payload, bytes) else payload.encode()
        assert letter["payload_bytes"] == len(raw)
        assert letter["payload"] == raw.decode()[:4096]
        if field is not None:
            assert field in [e["field"] for e in letter["errors"]], letter
    unknown_site = json.loads(got[3][1])
    assert "nowhere" in unknown_site["reason"] or unknown_site["errors"], unknown_site
    assert "150" in json.dumps(json.loads(got[4][1])["errors"])
    # Acknowledged, they are not sent again: a restarted Rallypoint gets only what is new.
    with rallypoint(db, clock, broker, client_id) as (client, ingest):
        broker.publish(f"{TOPIC}/readings", readings((CL2, 0.0)))
        wait_for(lambda: ingest.taken == 1, "the message after the restart")
        assert ingest.refused == 0


def test_a_broker_restart_and_a_rallypoint_restart_lose_nothing_and_take_nothing_twice(
    db: Database, clock: ManualClock, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Readings alternating 12 and 0 ppm on one detector: each is a tier change, so a lost
    message shows as a missing event, and a message taken twice in the ingester's count."""
    client_id = new_id()
    values = [12.0 if i % 2 == 0 else 0.0 for i in range(16)]
    messages = [readings((H2S, v)) for v in values]
    caplog.set_level(logging.INFO, logger="command.mqtt")
    taken = 0
    with rallypoint(db, clock, broker, client_id) as (client, ingest):
        broker.publish_lines(f"{TOPIC}/readings/gw-1", messages[:5])
        wait_for(lambda: ingest.taken == 5, "the first five")
        broker.stop()
        wait_for(lambda: len(ingest.delays) >= 5, "five reconnection attempts")
        broker.start()
        wait_for(lambda: ingest.connections == 2, "the reconnection")
        broker.publish_lines(f"{TOPIC}/readings/gw-1", messages[5:10])
        wait_for(lambda: ingest.taken == 10, "the next five")
        delays = list(ingest.delays)
        taken += ingest.taken
    # Rallypoint is away: the broker queues for its persistent session, and acknowledged each
    # of these to the gateway. It restarts too, from its persistence file.
    broker.publish_lines(f"{TOPIC}/readings/gw-1", messages[10:])
    broker.stop()
    broker.start()
    with rallypoint(db, clock, broker, client_id) as (client, ingest):
        wait_for(lambda: ingest.taken == 6, "the six queued while Rallypoint was away")
        taken += ingest.taken
        states = [e for e in site_events(client, "sensor.state") if e["data"]["sensor_id"] == H2S]
        assert ingest.refused == 0
    assert taken == len(messages)  # none twice
    assert [e["data"]["value"] for e in states] == values  # none lost, in order
    assert {e["actor"] for e in states} == {"mqtt:gw-1"}
    # Backoff: exponential from 0.05 s, capped at 0.4 s, with jitter (half of it random).
    for attempt, delay in enumerate(delays[:5]):
        ceiling = min(0.4, 0.05 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling, (attempt, delays)
    assert max(delays) <= 0.4
    logged = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(logged) >= 5


def test_the_backoff_grows_caps_and_jitters() -> None:
    ingest = MqttIngest(None, Target("localhost", backoff_initial_s=1.0, backoff_max_s=30.0))  # type: ignore[arg-type]
    waits = [[ingest.backoff(n) for n in range(8)] for _ in range(50)]
    for n in range(8):
        ceiling = min(30.0, 2.0**n)
        seen = [w[n] for w in waits]
        assert all(ceiling / 2 <= s <= ceiling for s in seen)
        assert len(set(seen)) > 1  # jittered: fifty servers do not all retry at once


def test_broker_urls() -> None:
    assert Target.from_url("mqtt://gw.plant.local") == Target("gw.plant.local", 1883, False)
    secure = Target.from_url("mqtts://u:p%40ss@10.0.0.5", client_id="rp-1")
    assert (secure.port, secure.tls, secure.username, secure.password) == (8883, True, "u", "p@ss")
    assert secure.client_id == "rp-1"
    with pytest.raises(ValueError, match="not an MQTT URL"):
        Target.from_url("http://broker")
    assert "rallypoint/+/readings/+" in Target("h").subscriptions()


def test_readings_waiting_together_are_taken_together_and_a_bad_one_alone(
    db: Database, clock: ManualClock
) -> None:
    """Messages that arrive together (a backlog after a restart) are taken in one call of the
    post; one bad among them sends that group one by one: each taken or refused on its own,
    in order, its dead letter naming its own rows."""
    post = CommandPost(db, Hub(), clock, SiteModels(db))
    ingest = MqttIngest(post, Target("unused"))
    topic = f"{TOPIC}/readings/gw-3"
    good = [readings((H2S, 12.0)), readings((H2S, 0.0), (CL2, 1.4)), readings((H2S, 12.0))]
    outcomes, error = ingest.process_many([(topic, m.encode()) for m in good])
    assert error is None and [o.accepted for o in outcomes] == [1, 2, 1]
    with db.read() as session:
        logged = [e for e in event_log.since(session, DEMO_ID, 0) if e.type == "sensor.state"]
    assert [(e.data["sensor_id"], e.data["to"]) for e in logged] == [
        (H2S, "alarm"),
        (H2S, None),
        (CL2, "alarm"),
        (H2S, "alarm"),
    ]
    mixed = [readings((H2S, 0.0)), readings((H2S, 5.5), (LEL, 150.0)), readings((H2S, 12.0))]
    outcomes, error = ingest.process_many([(topic, m.encode()) for m in mixed])
    assert error is None
    assert [o.dead_letter is None for o in outcomes] == [True, False, True]
    letter = outcomes[1].dead_letter
    assert letter is not None and letter[1]["errors"][0]["field"] == "readings[1].value"
    with db.read() as session:
        after = [e for e in event_log.since(session, DEMO_ID, 0) if e.type == "sensor.state"]
    # The bad message's warning (5.5 ppm) was not taken: back to normal, then alarm.
    assert [(e.data["sensor_id"], e.data["to"]) for e in after[4:]] == [(H2S, None), (H2S, "alarm")]
    assert (ingest.taken, ingest.refused) == (5, 1)


def test_a_message_the_server_cannot_take_yet_is_not_acknowledged_and_comes_again(
    db: Database, clock: ManualClock, broker: Broker
) -> None:
    """A 5xx on the REST path (the incidents still being rebuilt) is not the message's fault:
    no dead letter, no acknowledgement; the subscriber reconnects and the broker sends it
    again."""
    with rallypoint(db, clock, broker, new_id()) as (client, ingest):
        take = ingest.post.readings
        calls: list[int] = []

        def once_recovering(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise Recovering("rebuilding the incidents")
            return take(*args, **kwargs)

        ingest.post.readings = once_recovering  # type: ignore[method-assign]
        broker.publish(f"{TOPIC}/readings/gw-5", readings((H2S, 12.0)))
        wait_for(lambda: ingest.taken == 1, "the message sent again")
        assert ingest.connections == 2 and ingest.refused == 0 and len(calls) == 2
        states = site_events(client, "sensor.state")
    assert [(e["data"]["sensor_id"], e["actor"]) for e in states] == [(H2S, "mqtt:gw-5")]


def test_device_events_over_mqtt_are_logged_as_over_rest(
    db: Database, clock: ManualClock, broker: Broker
) -> None:
    """An SOS from a wristband's gateway: the same ``person.sos`` event as
    ``POST .../device-events``, the gateway its actor; one naming nobody of the site is a dead
    letter, and nothing of its message is taken."""
    body = {"events": [{"device_id": "WB-0001", "kind": "sos", "person_id": "P-0001"}]}
    nobody = {
        "events": [
            {"device_id": "WB-0002", "kind": "battery_low", "person_id": "P-0002"},
            {"device_id": "WB-0003", "kind": "sos", "person_id": "nobody"},
        ]
    }
    with rallypoint(db, clock, broker, new_id()) as (client, ingest):
        broker.publish(f"{TOPIC}/events/bands-1", json.dumps(body))
        broker.publish(f"{TOPIC}/events/bands-1", json.dumps(nobody))
        wait_for(lambda: ingest.taken + ingest.refused == 2, "the device events")
        rest = client.post(
            f"{SITE}/device-events",
            json={"events": [{"device_id": "WB-0004", "kind": "sos", "person_id": "P-0003"}]},
        )
        assert rest.status_code == 200, rest.text
        page = client.get(f"{SITE}/events", params={"limit": 1000}).json()["events"]
    assert (ingest.taken, ingest.refused) == (1, 1)
    sos = [e for e in page if e["type"] == "person.sos"]
    assert [(e["data"]["person_id"], e["actor"]) for e in sos] == [
        ("P-0001", "mqtt:bands-1"),
        ("P-0003", "cmd-mqtt"),
    ]
    assert set(sos[0]["data"]) == set(sos[1]["data"])  # the same shape of event both ways
    assert not [e for e in page if e["type"] == "person.battery_low"]
