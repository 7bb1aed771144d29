"""MQTT ingestion benchmark: sensor readings a second, end to end, against the REST path.

Run: ``.venv/bin/python -m benchmarks.bench_mqtt [--rate 10000] [--seconds 10] [--batch 500]``.

A Mosquitto of its own (Debian's, as in tests/mosquitto.py) and the real server (uvicorn in a
thread, a SQLite file with the demo site and its plans) subscribed to it. Gateways are played
by a paho-mqtt client publishing batches of readings with QoS 1, as a site's gateways would
(one message per batch, every gas detector of the demo site, mostly quiet, one reading in a
thousand above its alarm threshold (``--alarm-share``), so that tier changes and plan proposals
are logged: at 10,000 readings a second, an alarm flood by ISA-18.2's measure). Each message
goes the whole way: broker, Rallypoint's subscriber, the same checks and tier evaluation as
``POST .../readings``, the event log, and only then the acknowledgement.

Three figures:
- **offered**: ``--rate`` readings a second for ``--seconds``; achieved rate and per-message
  latency (publish to processed and logged);
- **flat out (MQTT)**: as many batches as the offered run, published at once: the rate at which
  Rallypoint drains them;
- **flat out (REST)**: the same batches posted one after another to ``POST .../readings`` on
  the same server: the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.bench_command import DEMO_ID, BackgroundServer, free_port
from benchmarks.bench_ingest import prepare
from command import events as event_log
from command.app import create_app
from command.mqtt import MqttIngest, Outcome
from command.settings import Settings
from tests.mosquitto import Broker

ROOT = Path(__file__).resolve().parent.parent


def gas_sensors() -> list[dict[str, Any]]:
    features = json.loads((ROOT / "fixtures/demo-site/sensors.geojson").read_text("utf-8"))
    return [f for f in features["features"] if f["properties"]["kind"] == "gas"]


def batches(count: int, size: int, alarm_share: float, seed: int = 42) -> list[str]:
    """``count`` message bodies of ``size`` readings each (the REST body exactly); a share
    ``alarm_share`` of the readings is above the detector's alarm threshold."""
    rng = random.Random(seed)
    sensors = gas_sensors()
    out = []
    for _ in range(count):
        rows = []
        for _ in range(size):
            sensor = rng.choice(sensors)
            p = sensor["properties"]
            high = rng.random() < alarm_share
            value = (
                p["alarm"] * rng.uniform(1.05, 1.5) if high else p["warning"] * rng.uniform(0, 0.6)
            )
            rows.append({"sensor_id": sensor["id"], "value": round(value, 3)})
        out.append(json.dumps({"readings": rows, "gateway": "bench-gw"}))
    return out


class Probe:
    """When each message was published and processed (FIFO: the k-th processed is the k-th
    published), from the subscriber's ``on_processed``."""

    def __init__(self) -> None:
        self.processed: list[float] = []
        self.refused = 0
        self.done = threading.Event()
        self.expect = 0

    def __call__(self, topic: str, outcome: Outcome) -> None:
        self.processed.append(time.perf_counter())
        self.refused += outcome.dead_letter is not None
        if len(self.processed) >= self.expect:
            self.done.set()

    def reset(self, expect: int) -> None:
        self.processed, self.refused, self.expect = [], 0, expect
        self.done.clear()


def publisher(broker: Broker) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-gateway", clean_session=True)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def offered(
    client: paho.Client, probe: Probe, bodies: list[str], rate: int, batch: int
) -> list[str]:
    topic = f"rallypoint/{DEMO_ID}/readings/bench-gw"
    probe.reset(len(bodies))
    sent: list[float] = []
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        due = start + i * batch / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.005, due - now))
        sent.append(time.perf_counter())
        client.publish(topic, body, qos=1)
    assert probe.done.wait(120), "not every message was processed"
    elapsed = probe.processed[-1] - start
    latencies = sorted((p - s) * 1000 for p, s in zip(probe.processed, sent, strict=True))

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    readings = len(bodies) * batch
    achieved = readings / elapsed
    return [
        f"offered {rate} readings/s in batches of {batch} for {len(bodies) * batch / rate:.0f} s; "
        f"achieved {achieved:.0f}/s ({achieved / rate:.2f} of offered), {probe.refused} refused",
        f"per message ({batch} readings), publish to logged: p50 {statistics.median(latencies):.1f}"
        f" ms  p95 {pct(0.95):.1f} ms  p99 {pct(0.99):.1f} ms  max {latencies[-1]:.1f} ms",
    ]


def flat_out_mqtt(client: paho.Client, probe: Probe, bodies: list[str]) -> float:
    topic = f"rallypoint/{DEMO_ID}/readings/bench-gw"
    probe.reset(len(bodies))
    start = time.perf_counter()
    for body in bodies:
        client.publish(topic, body, qos=1)
    assert probe.done.wait(300), "not every message was processed"
    return (probe.processed[-1] - start) / len(bodies)


async def flat_out_rest(base: str, token: str, bodies: list[str]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        start = time.perf_counter()
        for body in bodies:
            answer = await http.post(f"/api/sites/{DEMO_ID}/readings", content=body)
            answer.raise_for_status()
        return (time.perf_counter() - start) / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--alarm-share",
        type=float,
        default=0.001,
        help="share of readings above the alarm threshold (each rise and fall is logged)",
    )
    args = parser.parse_args()
    count = max(1, round(args.rate * args.seconds / args.batch))
    bodies = batches(count, args.batch, args.alarm_share)
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-mqtt-") as tmp:
        broker = Broker(Path(tmp) / "mosquitto", max_inflight=100).start()
        url, token = prepare(Path(tmp))
        app = create_app(
            Settings(database_url=url, ws_heartbeat_s=300, mqtt_url=broker.url, log_level="WARNING")
        )
        port = free_port()
        server = BackgroundServer(app, port)
        server.start()
        client = None
        try:
            ingest: MqttIngest = app.state.mqtt
            deadline = time.monotonic() + 10
            while not ingest.subscribed.is_set():
                assert time.monotonic() < deadline, "no subscription"
                time.sleep(0.02)
            probe = Probe()
            ingest.on_processed = probe
            client = publisher(broker)
            flat_out_mqtt(client, probe, bodies[: max(1, count // 10)])  # warm up
            lines = offered(client, probe, bodies, args.rate, args.batch)
            mqtt_s = flat_out_mqtt(client, probe, bodies)
            rest_s = asyncio.run(flat_out_rest(f"http://127.0.0.1:{port}", token, bodies))
            with app.state.db.read() as session:
                logged = event_log.last_seq(session, DEMO_ID)
        finally:
            if client is not None:
                client.loop_stop()
                client.disconnect()
            server.stop()
            broker.stop()
    mqtt_rate, rest_rate = args.batch / mqtt_s, args.batch / rest_s
    lines += [
        f"flat out, {count} messages of {args.batch}: MQTT {mqtt_rate:.0f} readings/s "
        f"({mqtt_s * 1000:.1f} ms a message), REST {rest_rate:.0f} readings/s "
        f"({rest_s * 1000:.1f} ms a request); MQTT/REST {mqtt_rate / rest_rate:.2f}",
        f"the site's event log holds {logged} events after the run (tier changes, proposals)",
    ]
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
