"""A Mosquitto broker of the test's own (never the machine's, which may listen on 1883): Debian's
``/usr/sbin/mosquitto`` as a subprocess on a free loopback port, with a config and a persistence
file in a folder of its own, so that a test can stop and restart it and find the queued QoS 1
messages still there. Publishing and reading go through Mosquitto's own command-line clients
(``mosquitto_pub``, ``mosquitto_sub``): a client independent of the one under test.

Without Mosquitto the tests are skipped, saying so (``scripts/mosquitto.sh`` installs it, and
``make test`` runs that); with ``CI=true`` they fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = Path("/usr/sbin/mosquitto")
WAIT_S = 10.0


def require_mosquitto() -> None:
    """Skip (fail with CI=true) unless the broker and its clients are installed."""
    missing = [
        name
        for name, found in (
            (str(MOSQUITTO), MOSQUITTO.is_file()),
            ("mosquitto_pub", shutil.which("mosquitto_pub") is not None),
            ("mosquitto_sub", shutil.which("mosquitto_sub") is not None),
        )
        if not found
    ]
    if missing:
        message = f"no {', '.join(missing)}: scripts/mosquitto.sh installs Debian's mosquitto"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Broker:
    """One Mosquitto, started with :meth:`start`, stopped (SIGTERM: it saves its persistence
    file first) with :meth:`stop`, on the same port every time."""

    def __init__(self, folder: Path, *, max_inflight: int = 20) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    # Run as root, it would become the user "mosquitto", who cannot write here.
                    f"user {getpass.getuser()}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {folder}/",
                    "autosave_interval 1",
                    # QoS 1 messages queued for a persistent session while its client is away.
                    "max_queued_messages 100000",
                    f"max_inflight_messages {max_inflight}",
                    f"log_dest file {self.log}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.process.poll() is None, f"mosquitto stopped: {self.log_text()[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto took too long to start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT_S)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    # -- an independent client: Mosquitto's own command-line tools ------------------------------

    def _client(self, program: str) -> list[str]:
        return [program, "-h", "127.0.0.1", "-p", str(self.port)]

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1) -> None:
        """Publish one message with ``mosquitto_pub`` (it returns once the broker has
        acknowledged a QoS 1 message)."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        subprocess.run(
            [*self._client("mosquitto_pub"), "-q", str(qos), "-t", topic, "-s"],
            input=data,
            check=True,
            timeout=WAIT_S,
        )

    def publish_lines(self, topic: str, payloads: list[str], *, qos: int = 1) -> None:
        """Publish each of ``payloads`` (one line each) as a message, in order, over one
        connection (``mosquitto_pub -l``)."""
        subprocess.run(
            [*self._client("mosquitto_pub"), "-q", str(qos), "-t", topic, "-l"],
            input="".join(f"{p}\n" for p in payloads).encode("utf-8"),
            check=True,
            timeout=WAIT_S * 3,
        )

    def register(self, client_id: str, topic: str) -> None:
        """Make a persistent QoS 1 subscription for ``client_id`` (then gone: the broker keeps
        what arrives for it, for :meth:`collect`)."""
        subprocess.run(
            [*self._client("mosquitto_sub"), "-q", "1", "-c", "-i", client_id, "-t", topic, "-E"],
            check=True,
            timeout=WAIT_S,
        )

    def collect(self, client_id: str, topic: str, count: int) -> list[tuple[str, str]]:
        """The next ``count`` messages of ``client_id``'s persistent subscription, as (topic,
        payload); fewer when they do not come within 10 s."""
        done = subprocess.run(
            [
                *self._client("mosquitto_sub"),
                *("-q", "1", "-c", "-i", client_id, "-t", topic),
                *("-C", str(count), "-W", "10", "-F", "%t\t%p"),
            ],
            capture_output=True,
            timeout=WAIT_S * 2,
        )
        lines = done.stdout.decode("utf-8", errors="replace").splitlines()
        return [tuple(line.split("\t", 1)) for line in lines if "\t" in line]  # type: ignore[misc]


class MachineBroker(Broker):
    """The machine's own broker on localhost:1883, the one `make mosquitto` (so `make test`
    and .ci/run) starts from the Debian package when none runs: used, never started or
    stopped here. Skips (fails with CI=true) when nothing listens there."""

    def __init__(self) -> None:  # no folder, no config: the Debian package's
        self.port = 1883
        self.process = None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            message = "no broker on localhost:1883 ('make mosquitto' starts Debian's)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)

    def start(self) -> Broker:
        raise AssertionError("the machine's broker is not the tests' to start")

    def stop(self) -> None:
        raise AssertionError("the machine's broker is not the tests' to stop")

    def log_text(self) -> str:
        return ""
