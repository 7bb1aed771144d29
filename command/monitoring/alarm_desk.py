"""What the command post does with alarm settings, modes, voting and confirmations.

Each action is checked, then its rows (``sensor_alarm_settings``, ``alarm_areas``) and its
event are written in one transaction under the post's lock, then memory follows and the walls
are told: a refused action leaves nothing behind (``command.monitoring.alarms`` has the rules).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from command import events as event_log
from command.monitoring.alarms import (
    CLEAR_EVENTS,
    MODES,
    NO_SETTINGS,
    SET_EVENTS,
    VOTING,
    Scope,
    SensorMode,
    default_voting,
    parse_mode,
    parse_settings,
    proposals,
    standard_limits,
    store_sensor,
    store_voting,
    stored_sites,
    thresholds_of,
    voting_group,
)
from command.sensors import TIERS, Sensor
from gis.errors import FieldError, IllegalTransition, InvalidInput, NotFound
from plans.store import approved_plans

if TYPE_CHECKING:
    from command.post import CommandPost
    from command.site_model import SiteModel

#: Who may set each mode: shelving hides an alarm from the post, so only a commander shelves;
#: taking a detector out of service or testing it is also the planner's (maintenance) job.
MODE_ROLES = {
    "shelved": ("commander",),
    "out_of_service": ("commander", "planner"),
    "test": ("commander", "planner"),
}


def _sensor(model: SiteModel, sensor_id: str) -> Sensor:
    sensor = model.sensors.get(sensor_id)
    if sensor is None:
        raise NotFound(
            f"no sensor '{sensor_id}' at site '{model.site.id}'",
            errors=[FieldError("sensor", "unknown")],
        )
    return sensor


def _publish(post: CommandPost, site_id: str, logged: list[event_log.LoggedEvent]) -> None:
    from command.post import event_message

    post.hub.publish(site_id, [event_message(e) for e in logged])


@contextlib.contextmanager
def _site(post: CommandPost, site_id: str) -> Iterator[SiteModel]:
    """The site's model, under the post's lock, with its alarm setup loaded."""
    post.model(site_id)
    with post._lock:
        model = post._planned_model(site_id)
        with post.db.read() as session:
            post.alarm_board.setup(site_id, session)
        yield model


# -- settings ------------------------------------------------------------------------------------


def settings_view(post: CommandPost, site_id: str, sensor_id: str) -> dict[str, Any]:
    """A sensor's alarm settings: those in force (and where its thresholds come from), the
    overrides stored, the standard's bounds, its area and vote, and its mode."""
    with _site(post, site_id) as model:
        sensor = _sensor(model, sensor_id)
        setup = post.alarm_board.setups[site_id]
        settings = setup.settings.get(sensor_id, NO_SETTINGS)
        thresholds, source = thresholds_of(sensor, settings)
        scope: Scope = (site_id, None)
        vote = _vote(post, scope, model, sensor)
        mode = setup.modes.get(sensor_id)
    return {
        "sensor_id": sensor_id,
        "kind": sensor.kind,
        "substance": sensor.substance,
        "unit": sensor.unit,
        "in_force": {
            "thresholds": dict(zip(TIERS, thresholds, strict=True)),
            "thresholds_from": source,
            "deadband": settings.deadband,
            "hysteresis": None if settings.deadband is not None else "10 % of each threshold",
            "on_delay_s": settings.on_delay_s,
            "off_delay_s": settings.off_delay_s,
            "meanings": dict(settings.meanings),
        },
        "overrides": settings.as_dict() if settings != NO_SETTINGS else None,
        "layer": dict(zip(TIERS, sensor.thresholds, strict=True)),
        "standard": standard_limits(sensor),
        "voting": vote,
        "mode": mode.as_dict() if mode else None,
    }


def set_settings(
    post: CommandPost, site_id: str, sensor_id: str, body: Any, *, actor: str
) -> dict[str, Any]:
    """Replace a sensor's overrides (``{}``: none): ``sensor.alarm_settings`` names who."""
    with _site(post, site_id) as model:
        sensor = _sensor(model, sensor_id)
        settings = parse_settings(body, sensor)
        setup = post.alarm_board.setups[site_id]
        mode = setup.modes.get(sensor_id)
        now = post.clock.now()
        with post.db.write() as session:
            store_sensor(session, site_id, sensor_id, settings, mode, actor=actor, now=now)
            logged = event_log.append_many(
                session,
                site_id,
                [
                    event_log.Draft(
                        "sensor.alarm_settings",
                        actor,
                        {"sensor_id": sensor_id, "settings": settings.as_dict(), "by": actor},
                    )
                ],
                now=now,
            )
        if settings == NO_SETTINGS:
            setup.settings.pop(sensor_id, None)
        else:
            setup.settings[sensor_id] = settings
        # The timers ran against the old figures: the next reading starts them afresh.
        post.alarm_board.timers.get((site_id, None), {}).pop(sensor_id, None)
        post.alarm_board.pending.get((site_id, None), set()).discard(sensor_id)
        _publish(post, site_id, logged)
    return settings_view(post, site_id, sensor_id)


# -- voting --------------------------------------------------------------------------------------


def _vote(post: CommandPost, scope: Scope, model: SiteModel, sensor: Sensor) -> dict[str, Any]:
    areas = post.alarm_board.areas(model.build, model.layers["zones"], model.sensors)
    area = areas.get(sensor.id, sensor.id)
    members = [
        m
        for m in model.sensors.values()
        if areas.get(m.id, m.id) == area and voting_group(m) == voting_group(sensor)
    ]
    tiers = post.sensor_tiers.get(scope[0], {})
    vote = post.alarm_board.voting_of(scope, area, members, tiers)
    vote["detectors"] = sorted(m.id for m in members)
    return vote


def voting_view(post: CommandPost, site_id: str, zone_id: str) -> dict[str, Any]:
    """A zone's voting mode (and whether it is the default), with its detectors by group."""
    with _site(post, site_id) as model:
        zone = _zone(model, zone_id)
        stored = post.alarm_board.setups[site_id].voting.get(zone_id)
        areas = post.alarm_board.areas(model.build, model.layers["zones"], model.sensors)
        groups: dict[str, list[str]] = {}
        for sensor in model.sensors.values():
            if areas.get(sensor.id) == zone_id and sensor.kind != "wind":
                kind, substance = voting_group(sensor)
                groups.setdefault(f"{kind}:{substance}" if substance else kind, []).append(
                    sensor.id
                )
    largest = max((len(v) for v in groups.values()), default=0)
    return {
        "zone_id": zone_id,
        "name": zone.get("properties", {}).get("name"),
        "voting": stored or default_voting(largest),
        "default": stored is None,
        "groups": {k: sorted(v) for k, v in sorted(groups.items())},
    }


def _zone(model: SiteModel, zone_id: str) -> Mapping[str, Any]:
    for zone in model.layers["zones"]:
        if str(zone["id"]) == zone_id:
            return zone
    raise NotFound(
        f"no zone '{zone_id}' at site '{model.site.id}'", errors=[FieldError("zone", "unknown")]
    )


def set_voting(
    post: CommandPost, site_id: str, zone_id: str, body: Any, *, actor: str
) -> dict[str, Any]:
    """``{"voting": "1oo1" | "1oo2" | "2oo2" | null}`` (null: the default):
    ``zone.alarm_voting`` names who."""
    voting = body.get("voting", ...) if isinstance(body, dict) else ...
    extra = sorted(set(body) - {"voting"}) if isinstance(body, dict) else []
    if voting is ... or (voting is not None and voting not in VOTING) or extra:
        raise InvalidInput(
            "name the zone's voting mode",
            errors=[FieldError(extra[0] or "body", f"unknown field {extra[0]!r}")]
            if extra
            else [FieldError("voting", f"one of {', '.join(VOTING)}, or null for the default")],
        )
    with _site(post, site_id) as model:
        _zone(model, zone_id)
        now = post.clock.now()
        with post.db.write() as session:
            store_voting(session, site_id, zone_id, voting, actor=actor, now=now)
            logged = event_log.append_many(
                session,
                site_id,
                [
                    event_log.Draft(
                        "zone.alarm_voting",
                        actor,
                        {"zone_id": zone_id, "voting": voting, "by": actor},
                    )
                ],
                now=now,
            )
        setup = post.alarm_board.setups[site_id]
        if voting is None:
            setup.voting.pop(zone_id, None)
        else:
            setup.voting[zone_id] = voting
        _publish(post, site_id, logged)
    return voting_view(post, site_id, zone_id)


# -- modes ---------------------------------------------------------------------------------------


def set_mode(
    post: CommandPost,
    site_id: str,
    sensor_id: str,
    body: Any,
    *,
    actor: str,
    by_name: str | None,
    roles: frozenset[str],
) -> event_log.LoggedEvent:
    """Shelve a sensor, take it out of service or put it in test: ``{"mode", "reason",
    "until" | "for_s" (shelving)}``. One mode at a time (another is 409); shelving again
    changes the expiry."""
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in MODES:
        raise InvalidInput(
            "name the mode", errors=[FieldError("mode", f"one of {', '.join(MODES)}")]
        )
    allowed = MODE_ROLES[str(mode)]
    if roles.isdisjoint(allowed):
        from gis.errors import NotPermitted

        raise NotPermitted(
            f"{mode} needs one of the roles {', '.join(allowed)}",
            errors=[FieldError("role", f"one of {', '.join(allowed)}")],
        )
    rest = {k: v for k, v in body.items() if k != "mode"}
    with _site(post, site_id) as model:
        _sensor(model, sensor_id)
        now = post.clock.now()
        reason, until = parse_mode(rest, str(mode), now)
        setup = post.alarm_board.setups[site_id]
        current = setup.modes.get(sensor_id)
        if current is not None and current.mode != mode:
            raise IllegalTransition(
                f"{sensor_id} is {current.mode.replace('_', ' ')} (by {current.by}: "
                f"{current.reason}); clear that first",
                errors=[FieldError("mode", f"clear {current.mode} first")],
            )
        new = SensorMode(str(mode), reason, actor, now, until)
        data = {
            "sensor_id": sensor_id,
            "mode": mode,
            "reason": reason,
            "until": until.isoformat() if until else None,
            "by": actor,
            "by_name": by_name,
        }
        settings = setup.settings.get(sensor_id, NO_SETTINGS)
        with post.db.write() as session:
            store_sensor(session, site_id, sensor_id, settings, new, actor=actor, now=now)
            [event] = event_log.append_many(
                session, site_id, [event_log.Draft(SET_EVENTS[str(mode)], actor, data)], now=now
            )
        setup.modes[sensor_id] = new
        if new.mode != "test":  # silent: no delay of it runs on
            post.alarm_board.timers.get((site_id, None), {}).pop(sensor_id, None)
            post.alarm_board.pending.get((site_id, None), set()).discard(sensor_id)
        _publish(post, site_id, [event])
    return event


def clear_mode(
    post: CommandPost,
    site_id: str,
    sensor_id: str,
    body: Any,
    *,
    actor: str,
    by_name: str | None,
    roles: frozenset[str],
) -> event_log.LoggedEvent:
    """End a sensor's mode, ``{"reason"}``: its readings count again from the next one."""
    with _site(post, site_id) as model:
        _sensor(model, sensor_id)
        current = post.alarm_board.setups[site_id].modes.get(sensor_id)
        if current is None:
            raise IllegalTransition(
                f"{sensor_id} is in service: nothing to clear",
                errors=[FieldError("mode", "none is set")],
            )
        allowed = MODE_ROLES[current.mode]
        if roles.isdisjoint(allowed):
            from gis.errors import NotPermitted

            raise NotPermitted(
                f"ending {current.mode} needs one of the roles {', '.join(allowed)}",
                errors=[FieldError("role", f"one of {', '.join(allowed)}")],
            )
        reason, _ = parse_mode(body, "clear", post.clock.now())
        return _clear(post, site_id, sensor_id, current, actor, by_name, reason, expired=False)


def _clear(
    post: CommandPost,
    site_id: str,
    sensor_id: str,
    current: SensorMode,
    actor: str,
    by_name: str | None,
    reason: str,
    *,
    expired: bool,
) -> event_log.LoggedEvent:
    """Under the lock: the mode ends, row and event together."""
    now = post.clock.now()
    setup = post.alarm_board.setups[site_id]
    settings = setup.settings.get(sensor_id, NO_SETTINGS)
    data: dict[str, Any] = {
        "sensor_id": sensor_id,
        "mode": current.mode,
        "reason": reason,
        "by": actor,
        "by_name": by_name,
        "set_by": current.by,
        "set_reason": current.reason,
        "since": current.since.isoformat(),
    }
    if expired:
        data["expired"] = True
    with post.db.write() as session:
        store_sensor(session, site_id, sensor_id, settings, None, actor=actor, now=now)
        [event] = event_log.append_many(
            session, site_id, [event_log.Draft(CLEAR_EVENTS[current.mode], actor, data)], now=now
        )
    setup.modes.pop(sensor_id, None)
    _publish(post, site_id, [event])
    return event


# -- confirmation by a person --------------------------------------------------------------------


def confirm(
    post: CommandPost,
    site_id: str,
    sensor_id: str,
    *,
    actor: str,
    by_name: str | None,
    note: str | None,
) -> list[event_log.LoggedEvent]:
    """A person on the wall confirms a sensor's alarm: ``sensor.confirmed`` naming who, and
    the plans its tier meets proposed from L2. Nothing to confirm (normal, confirmed already,
    shelved, out of service or in test) is 409, naming why."""
    scope: Scope = (site_id, None)
    with _site(post, site_id) as model:
        sensor = _sensor(model, sensor_id)
        tier = post.sensor_tiers.get(site_id, {}).get(sensor_id)
        done = post.alarm_board.confirmed.get(scope, {}).get(sensor_id)
        mode = post.alarm_board.setups[site_id].modes.get(sensor_id)
        why = None
        if mode is not None:
            why = f"{sensor_id} is {mode.mode.replace('_', ' ')}: its alarms are not confirmed"
        elif tier is None:
            why = f"{sensor_id} is normal: there is no alarm to confirm"
        elif done is not None:
            who = done.get("by_name") or done.get("by") or "voting"
            why = f"{sensor_id}'s alarm was confirmed already ({done.get('how')}: {who})"
        if why is not None:
            raise IllegalTransition(why, errors=[FieldError("sensor", "no alarm to confirm")])
        assert tier is not None
        now = post.clock.now()
        how = {"how": "person", "by": actor, "by_name": by_name, "note": note}
        with post.db.read() as session:
            plans = [p.template for p in approved_plans(session, site_id)]
        drafts = [
            event_log.Draft(
                "sensor.confirmed", actor, {"sensor_id": sensor_id, "tier": tier, **how}
            ),
            *proposals(
                sensor,
                tier,
                plans,
                confirmed=True,
                running_at=post._running_at_sensor(site_id, None),
                mark={},
            ),
        ]
        with post.db.write() as session:
            logged = event_log.append_many(
                session, site_id, drafts, exercises=post.exercises, now=now
            )
        post.alarm_board.confirmed.setdefault(scope, {})[sensor_id] = {
            **how,
            "at": now.isoformat(),
        }
        post.alarm_board.checks.get(scope, set()).discard(sensor_id)
        _publish(post, site_id, logged)
    return logged


# -- the clock -----------------------------------------------------------------------------------


def alarm_clock(post: CommandPost, *, shelvings: bool = True) -> list[event_log.LoggedEvent]:
    """Each second: shelvings that expired end (``sensor.unshelved``, by the system), and
    delays that completed without a new reading move their tiers. ``shelvings``: whether
    this process ends shelvings (they are the database's: one process does, the leader);
    delays are this process's own (started by the readings it took), and it ends them."""
    out: list[event_log.LoggedEvent] = []
    alarms: list[tuple[str, str, str]] = []
    with post._lock:
        now = post.clock.now()
        board = post.alarm_board
        if shelvings and not board.loaded_all:  # after a start: every site with a shelved one
            with post.db.read() as session:
                for site_id in stored_sites(session):
                    board.setup(site_id, session)
            board.loaded_all = True
        for site_id, setup in list(board.setups.items()) if shelvings else []:
            for sensor_id, mode in list(setup.modes.items()):
                if mode.mode == "shelved" and mode.until is not None and mode.until <= now:
                    out.append(
                        _clear(
                            post,
                            site_id,
                            sensor_id,
                            mode,
                            "system",
                            None,
                            "the shelving expired",
                            expired=True,
                        )
                    )
        for scope, waiting in list(board.pending.items()):
            if not waiting:
                continue
            site_id, exercise = scope
            if exercise is not None and exercise not in post.exercise_tiers:
                board.pending.pop(scope, None)  # the drill is over
                continue
            model = post._planned_model(site_id)
            held = post.exercise_tiers if exercise is not None else post.sensor_tiers
            tiers = dict(held.get(exercise if exercise is not None else site_id, {}))
            with post.db.read() as session:
                plans = [p.template for p in approved_plans(session, site_id)]
            outcome = board.evaluate(
                scope,
                build=model.build,
                sensors=model.sensors,
                zones=model.layers["zones"],
                tiers=tiers,
                values=None,
                now=now,
                actor="system",
                plans=plans,
                running_at=post._running_at_sensor(site_id, exercise),
                flags=post._alarm_flags_of(site_id),
            )
            logged: list[event_log.LoggedEvent] = []
            if outcome.drafts:
                with post.db.write() as session:
                    logged = event_log.append_many(
                        session, site_id, outcome.drafts, exercises=post.exercises, now=now
                    )
            board.apply(scope, outcome)
            if exercise is not None:
                post.exercise_tiers[exercise] = tiers
            else:
                post.sensor_tiers[site_id] = tiers
                post.alarms.follow(logged)
                alarms += [
                    (site_id, str(e.data["sensor_id"]), str(e.data["to"]))
                    for e in logged
                    if e.type == "sensor.state"
                    and e.data.get("to") in ("alarm", "high_alarm")
                    and not e.data.get("test")
                ]
            if logged:
                _publish(post, site_id, logged)
                out += logged
    if post.drills is not None:  # outside the lock, as for a reading
        for site_id, sensor_id, tier in alarms:
            post.drills.real_alarm(site_id, sensor_id, tier)
    return out
