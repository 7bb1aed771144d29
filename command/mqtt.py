"""Industrial ingestion over MQTT: gateways publish readings, positions and device events to a
broker (Mosquitto); Rallypoint subscribes and takes each message through the same checks and
the same :class:`~command.post.CommandPost` methods as the REST routes, so the same events are
logged (``docs/monitoring.md``, "MQTT ingestion").

Topics, under ``RALLYPOINT_MQTT_TOPIC_PREFIX`` (``rallypoint``)::

    rallypoint/<site>/readings[/<gateway>]    {"readings": [...]}    as POST .../readings
    rallypoint/<site>/positions[/<gateway>]   {"positions": [...]}   as POST .../positions
    rallypoint/<site>/events[/<gateway>]      {"events": [...]}      as POST .../device-events
    rallypoint/<site>/dead-letter             what was refused, and why (published here)

Delivery:
- A persistent session (clean session off, a fixed client id) and QoS 1: the broker keeps what
  gateways publish while Rallypoint is away, and sends it when it is back.
- A message is acknowledged (PUBACK) only once it was processed and its events logged, or
  refused and its dead letter acknowledged by the broker: what the broker took from a gateway
  is not lost when Rallypoint or the broker stops in between.
- ``aiomqtt`` does not reconnect by itself: :meth:`MqttIngest.run` does, with capped exponential
  backoff and jitter, logging each attempt, and subscribes again.
- Processing is synchronous (the post's lock, the database): it runs in a worker thread, in
  the order received, so a site's messages are taken in order (and the acknowledgements go
  back in that order, as MQTT 3.1.1 wants). Readings waiting together are taken in one call
  (:meth:`MqttIngest.process_many`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import aiomqtt
from starlette.concurrency import run_in_threadpool

from command.monitoring.devices import parse_device_events
from command.post import CommandPost
from command.routes.live import parse_positions
from command.sensors import parse_readings
from command.settings import Settings
from command.strict_json import non_finite_field
from gis.errors import FieldError, InvalidInput, RallypointError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The kinds of message a gateway publishes: the last-but-one (or last) level of the topic.
KINDS = ("readings", "positions", "events")
DEAD_LETTER = "dead-letter"
#: At most this much of a refused payload is copied into its dead letter.
DEAD_LETTER_PAYLOAD_CHARS = 4096
#: A gateway's name (from the body's ``gateway`` or the topic), as it appears in the actor.
_GATEWAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
#: JSON no deeper than the REST bodies may be (command.middleware.JsonNesting).
MAX_DEPTH = 64
#: Readings in one message, as in one REST body; also the most taken in one call of the post
#: when messages waiting together are taken together.
MAX_READINGS = 10_000
#: Messages taken from the queue at once.
MAX_GROUP = 100


@dataclass(frozen=True)
class Broker:
    """Where the broker is and who Rallypoint is to it (from the ``RALLYPOINT_MQTT_*``
    settings)."""

    host: str
    port: int = 1883
    tls: bool = False
    client_id: str = "rallypoint"
    username: str | None = None
    password: str | None = None
    prefix: str = "rallypoint"
    max_payload_bytes: int = 1024 * 1024
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    keepalive_s: int = 30

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Broker:
        """``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS, port 8883 by
        default); a user and password in ``options`` win over the URL's."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an MQTT URL (mqtt://host:port or mqtts://...): {url!r}")
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        username = options.pop("username", None) or (
            unquote(parts.username) if parts.username else None
        )
        password = options.pop("password", None) or (
            unquote(parts.password) if parts.password else None
        )
        return cls(parts.hostname, port, tls, username=username, password=password, **options)

    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}/+/{kind}{tail}" for kind in KINDS for tail in ("", "/+")]


@dataclass
class Outcome:
    """What became of one message: taken (``accepted`` rows, ``events`` logged), or refused
    with a ``dead_letter`` to publish (its topic and body)."""

    accepted: int = 0
    events: int = 0
    dead_letter: tuple[str, dict[str, Any]] | None = None
    topic: str = ""


@dataclass(frozen=True)
class _Parsed:
    """A message that passed the checks of its own: what it asks of the post."""

    topic: str
    payload: bytes
    site: str
    kind: str
    actor: str
    items: Any  # readings, moves or device events


class Refused(Exception):
    """A message that cannot be taken, with the problem's detail and field errors."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


@dataclass
class MqttIngest:
    """Takes messages into ``post`` (:meth:`process`, synchronous) and keeps a subscription to
    the broker for them (:meth:`run`, the app's background task)."""

    post: CommandPost
    broker: Broker
    rng: random.Random = field(default_factory=random.Random)
    #: Counters, for tests and the benchmark: messages taken, refused, connections made and
    #: the delay before each reconnection attempt (seconds).
    taken: int = 0
    refused: int = 0
    connections: int = 0
    delays: list[float] = field(default_factory=list)
    #: Set while a connection is up and subscribed (tests wait for it).
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Called in the worker thread after each message is processed (the benchmark's probe).
    on_processed: Callable[[str, Outcome], None] | None = None
    #: Messages processed whose acknowledgement the broker may not have had when the
    #: connection dropped: a redelivery of one of them (same id, same bytes) after the
    #: reconnection is acknowledged again, not taken twice.
    _unconfirmed: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=1000))
    _redeliveries: set[tuple[int, bytes]] = field(default_factory=set)

    # -- processing (synchronous, in a worker thread) -------------------------------------------

    def process(self, topic: str, payload: bytes) -> Outcome:
        """Take one message, or say why not (a dead letter); never raises for bad input."""
        outcomes, error = self.process_many([(topic, payload)])
        if error is not None:
            raise error
        return outcomes[0]

    def process_many(
        self, messages: Sequence[tuple[str, bytes]]
    ) -> tuple[list[Outcome], Exception | None]:
        """Take messages (topic, payload) in order: an outcome for each message taken or
        refused, and the error that stopped the rest (a 5xx or worse: not the messages' fault),
        if one did.

        Consecutive readings of one site and one gateway, waiting together, are taken in one
        call of the post (as one larger batch from the gateway would be: the same tiers, in
        the same order, at a fraction of the cost per reading). Should the call refuse them,
        they are taken again one by one, so that each message is taken or refused on its own
        and its dead letter names its own rows."""
        parsed = [self._parsed(topic, payload) for topic, payload in messages]
        outcomes: list[Outcome] = []
        alone_until = 0
        i = 0
        try:
            while i < len(parsed):
                first = parsed[i]
                run = i + 1
                if i >= alone_until and isinstance(first, _Parsed) and first.kind == "readings":
                    total = len(first.items)
                    while run < len(parsed):
                        nxt = parsed[run]
                        if not (
                            isinstance(nxt, _Parsed)
                            and (nxt.kind, nxt.site, nxt.actor)
                            == ("readings", first.site, first.actor)
                            and total + len(nxt.items) <= MAX_READINGS
                        ):
                            break
                        total += len(nxt.items)
                        run += 1
                if run - i > 1:
                    assert isinstance(first, _Parsed)
                    together = [r for p in parsed[i:run] for r in cast(_Parsed, p).items]
                    try:
                        logged = self.post.readings(first.site, together, actor=first.actor)
                    except RallypointError as exc:
                        if exc.status_code >= 500:
                            raise
                        alone_until = run  # one of them is bad: each on its own
                        continue
                    for p in parsed[i:run]:
                        outcomes.append(self._done(p, Outcome(len(cast(_Parsed, p).items))))
                    outcomes[-1].events = len(logged)
                    i = run
                    continue
                outcomes.append(self._done(first, self._apply(first)))
                i += 1
        except Exception as exc:  # handed to the caller with what was done
            return outcomes, exc
        return outcomes, None

    def _parsed(self, topic: str, payload: bytes) -> _Parsed | Outcome:
        """The message checked on its own (a dead letter's outcome if it fails)."""
        try:
            return self._parse(topic, payload)
        except Refused as why:
            return self._refusal(topic, payload, why)
        except RallypointError as exc:
            return self._refusal(topic, payload, Refused(exc.detail, exc.errors))

    def _apply(self, parsed: _Parsed | Outcome) -> Outcome:
        if isinstance(parsed, Outcome):
            return parsed
        try:
            return self._take(parsed)
        except Refused as why:
            return self._refusal(parsed.topic, parsed.payload, why)
        except RallypointError as exc:
            if exc.status_code >= 500:  # not the message's fault (recovering): taken later
                raise
            # The same problems as the REST path's 4xx, with the same detail and errors.
            return self._refusal(parsed.topic, parsed.payload, Refused(exc.detail, exc.errors))

    def _refusal(self, topic: str, payload: bytes, why: Refused) -> Outcome:
        site = _site_of(topic, self.broker.prefix)
        outcome = Outcome(dead_letter=self._dead_letter(site, topic, payload, why))
        outcome.topic = topic
        return outcome

    def _done(self, parsed: _Parsed | Outcome, outcome: Outcome) -> Outcome:
        topic = parsed.topic
        outcome.topic = topic
        if outcome.dead_letter is None:
            self.taken += 1
        else:
            self.refused += 1
            log.warning(
                "MQTT message on %s refused (%s); sent to %s",
                topic,
                outcome.dead_letter[1]["reason"],
                outcome.dead_letter[0],
            )
        if self.on_processed is not None:
            self.on_processed(topic, outcome)
        return outcome

    def _parse(self, topic: str, payload: bytes) -> _Parsed:
        site, kind, gateway = _route(topic, self.broker.prefix)
        if len(payload) > self.broker.max_payload_bytes:
            raise Refused(
                f"a message is at most {self.broker.max_payload_bytes} bytes; this one is "
                f"{len(payload)}",
                [FieldError("payload", f"at most {self.broker.max_payload_bytes} bytes")],
            )
        body = _json(payload)
        if "drill" in body:
            raise Refused(
                "a drill's injects come through the API from a drill controller, not over MQTT",
                [FieldError("drill", "not taken over MQTT")],
            )
        named = body.pop("gateway", None)
        if named is not None:
            if not isinstance(named, str) or not _GATEWAY.match(named):
                raise Refused(
                    "the gateway's name is 1 to 64 letters, digits, '.', '_', ':' or '-'",
                    [FieldError("gateway", "a gateway name")],
                )
            gateway = named
        actor = f"mqtt:{gateway}" if gateway else "mqtt"
        items: Any
        if kind == "readings":
            items = parse_readings(body, limit=MAX_READINGS)
        elif kind == "positions":
            items = parse_positions(body)
        else:
            items = parse_device_events(body)
        return _Parsed(topic, payload, site, kind, actor, items)

    def _take(self, parsed: _Parsed) -> Outcome:
        site, actor, items = parsed.site, parsed.actor, parsed.items
        if parsed.kind == "readings":
            logged = self.post.readings(site, items, actor=actor)
            return Outcome(len(items), len(logged))
        if parsed.kind == "positions":
            self.post.positions(site, items)
            return Outcome(len(items), 0)
        logged = self.post.device_events(site, items, actor=actor)
        return Outcome(len(items), len(logged))

    def _dead_letter(
        self, site: str | None, topic: str, payload: bytes, refused: Refused
    ) -> tuple[str, dict[str, Any]]:
        text = payload[: DEAD_LETTER_PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")
        body = {
            "topic": topic,
            "reason": refused.detail,
            "errors": [e.as_dict() for e in refused.errors[:100]],
            "payload": text[:DEAD_LETTER_PAYLOAD_CHARS],
            "payload_bytes": len(payload),
            "truncated": len(text) > DEAD_LETTER_PAYLOAD_CHARS
            or len(payload) > DEAD_LETTER_PAYLOAD_CHARS * 4,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "received_at": self.post.clock.now().astimezone(UTC).isoformat(),
        }
        where = f"{self.broker.prefix}/{site}" if site else self.broker.prefix
        return f"{where}/{DEAD_LETTER}", body

    # -- the subscription (the event loop) ------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt ``attempt`` (0 first): exponential,
        capped, with "equal jitter" (half fixed, half random) so that many servers that lost
        one broker do not all come back in the same instant."""
        ceiling = min(self.broker.backoff_max_s, self.broker.backoff_initial_s * 2.0**attempt)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    async def run(self) -> None:
        """Stay subscribed until cancelled: connect, subscribe, take messages; when the
        connection fails or drops, wait (:meth:`backoff`) and start again."""
        attempt = 0
        b = self.broker
        while True:
            try:
                client = aiomqtt.Client(
                    b.host,
                    b.port,
                    identifier=b.client_id,
                    username=b.username,
                    password=b.password,
                    clean_session=False,
                    keepalive=b.keepalive_s,
                    tls_context=ssl.create_default_context() if b.tls else None,
                    timeout=10,
                )
                # aiomqtt 2.5 has no manual acknowledgement of its own; paho-mqtt under it
                # has (empicano/aiomqtt#345). Set before connecting: the session's queued
                # messages come right after the CONNACK.
                client._client.manual_ack_set(True)
                async with client:
                    self.connections += 1
                    for topic in b.subscriptions():
                        await client.subscribe(topic, qos=1)
                    log.info(
                        "MQTT: subscribed to %s:%d as %s (%s)",
                        b.host,
                        b.port,
                        b.client_id,
                        ", ".join(b.subscriptions()),
                    )
                    attempt = 0
                    self.subscribed.set()
                    # What was processed on the last connection may come again, unacknowledged.
                    self._redeliveries = set(self._unconfirmed)
                    self._unconfirmed.clear()
                    messages = client.messages
                    async for message in messages:
                        group = [message]
                        while len(messages) and len(group) < MAX_GROUP:
                            group.append(await anext(messages))
                        await self._handle(client, group)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                delay = self.backoff(attempt)
                self.delays.append(delay)
                attempt += 1
                log.warning(
                    "MQTT: broker %s:%d lost or unreachable (%s); reconnecting in %.2f s "
                    "(attempt %d)",
                    b.host,
                    b.port,
                    exc,
                    delay,
                    attempt,
                )
                await asyncio.sleep(delay)
            finally:
                self.subscribed.clear()

    async def _handle(self, client: aiomqtt.Client, messages: list[aiomqtt.Message]) -> None:
        """Process messages received together, in order; publish their dead letters; then
        acknowledge each, in the order received."""
        keys = [(m.mid, hashlib.sha256(bytes(m.payload)).digest()) for m in messages]
        work: list[tuple[str, bytes]] = []
        sent: list[bool] = []  # per message: handed to processing (not ignored)
        for message, key in zip(messages, keys, strict=True):
            topic = message.topic.value
            sent.append(False)
            if message.retain:
                # Sent again on every subscription: old news, taken when it was new.
                log.info("MQTT: retained message on %s ignored", topic)
            elif key in self._redeliveries:
                self._redeliveries.discard(key)
                log.info(
                    "MQTT: message %d on %s taken already; acknowledged again", message.mid, topic
                )
            else:
                self._redeliveries.clear()  # the redeliveries come first, before anything new
                work.append((topic, bytes(message.payload)))
                sent[-1] = True
        outcomes: list[Outcome] = []
        error: Exception | None = None
        if work:
            outcomes, error = await _finish_in_thread(lambda: self.process_many(work))
        for outcome in outcomes:
            if outcome.dead_letter is not None:
                where, body = outcome.dead_letter
                await client.publish(where, json.dumps(body), qos=1)
        # Those ignored or done are acknowledged; from the first not done on, none is.
        done = len(messages)
        if error is not None:
            done, left = 0, len(outcomes)
            for handed in sent:
                if handed and left == 0:
                    break
                left -= handed
                done += 1
        for message, key in list(zip(messages, keys, strict=True))[:done]:
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)
                self._unconfirmed.append(key)
        if error is not None:
            # Not the messages' fault (the database away, recovery under way): left
            # unacknowledged, and the broker sends them again after a reconnection.
            log.error("MQTT: messages could not be processed (%s); reconnecting", error)
            raise aiomqtt.MqttError(f"processing failed: {error}") from error


async def _finish_in_thread(work: Callable[[], _T]) -> _T:
    """Run ``work`` in a worker thread; cancelled meanwhile (the app stopping), wait for it to
    finish first: a message half taken when the server stops is taken whole."""
    task = asyncio.ensure_future(run_in_threadpool(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


def _site_of(topic: str, prefix: str) -> str | None:
    levels = topic.split("/")
    head = prefix.split("/")
    if levels[: len(head)] != head or len(levels) <= len(head) or not levels[len(head)]:
        return None
    return levels[len(head)]


def _route(topic: str, prefix: str) -> tuple[str, str, str | None]:
    """Site, kind and gateway (or None) of a topic ``<prefix>/<site>/<kind>[/<gateway>]``."""
    rest = topic.split("/")[len(prefix.split("/")) :]
    if topic.split("/")[: len(prefix.split("/"))] != prefix.split("/") or not 2 <= len(rest) <= 3:
        raise Refused(
            f"topics are {prefix}/<site>/<kind>[/<gateway>]", [FieldError("topic", topic)]
        )
    site, kind = rest[0], rest[1]
    if not site or kind not in KINDS:
        raise Refused(
            f"the kind of message is one of {', '.join(KINDS)}", [FieldError("topic", topic)]
        )
    gateway = rest[2] if len(rest) == 3 else None
    if gateway is not None and not _GATEWAY.match(gateway):
        raise Refused(
            "the gateway's name is 1 to 64 letters, digits, '.', '_', ':' or '-'",
            [FieldError("topic", "a gateway name as its last level")],
        )
    return site, kind, gateway


def _json(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, read as strictly as a REST body: UTF-8, RFC 8259 (no NaN
    or infinities), at most 64 levels deep."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Refused("the payload is not UTF-8 text", [FieldError("payload", "UTF-8")]) from exc
    except RecursionError as exc:
        raise Refused(
            f"JSON nests at most {MAX_DEPTH} levels", [FieldError("payload", "too deep")]
        ) from exc
    except ValueError as exc:
        raise Refused(f"the payload is not JSON: {exc}", [FieldError("payload", "JSON")]) from exc
    if not isinstance(body, dict):
        raise Refused("the payload is a JSON object", [FieldError("payload", "a JSON object")])
    if _depth(body) > MAX_DEPTH:
        raise Refused(f"JSON nests at most {MAX_DEPTH} levels", [FieldError("payload", "too deep")])
    where = non_finite_field(payload)  # a scan; parsed again only when suspect
    if where is not None:
        raise InvalidInput(
            "NaN and infinities are not JSON numbers", errors=[FieldError(where, "a finite number")]
        )
    return body


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            level.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            level.extend((v, depth + 1) for v in item)
    return deepest


def ingest_from_settings(post: CommandPost, settings: Settings) -> MqttIngest | None:
    """The app's subscriber, or None when ``RALLYPOINT_MQTT_URL`` is unset (MQTT off)."""
    if not settings.mqtt_url:
        return None
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    broker = Broker.from_url(
        settings.mqtt_url,
        client_id=settings.mqtt_client_id,
        username=settings.mqtt_username,
        password=password,
        prefix=settings.mqtt_topic_prefix,
        max_payload_bytes=settings.mqtt_max_payload_bytes,
        backoff_initial_s=settings.mqtt_backoff_initial_s,
        backoff_max_s=settings.mqtt_backoff_max_s,
    )
    return MqttIngest(post, broker)
