"""Stale edits explained (who changed what, and when) and merged three-way where they can be:
the layers API, If-Match, deletions, and imports through the API, the route and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from shapely import affinity
from shapely.geometry import mapping, shape
from sqlalchemy import func, select

from command.auth import Role
from command.cli import main
from gis import layers
from gis.errors import InvalidInput, PreconditionFailed, VersionConflict
from gis.layer_io import FileFormat, export_layer, import_file
from gis.storage.db import Database
from gis.storage.tables import ChangeRow
from tests.conftest import DEMO_ID, DEMO_SITE, sign_in
from tests.problems import assert_problem

ZONES = f"/api/sites/{DEMO_ID}/layers/zones"


def zone(db: Database, fid: str = "Z-001") -> layers.Feature:
    return layers.get_feature(db, DEMO_ID, "zones", fid)


def as_body(feature: layers.Feature, **changes: Any) -> dict[str, Any]:
    """A planner's whole-feature edit of ``feature`` (made on its version)."""
    body = feature.to_geojson()
    body["properties"] = {
        **{k: v for k, v in body["properties"].items() if k in feature.properties},
        "version": feature.version,
        **changes,
    }
    return body


def moved(feature: layers.Feature, dx: float) -> dict[str, Any]:
    assert feature.geometry is not None
    return dict(mapping(affinity.translate(feature.geometry, xoff=dx)))


def log_of(db: Database, fid: str) -> list[ChangeRow]:
    with db.read() as session:
        rows = session.scalars(
            select(ChangeRow)
            .where(ChangeRow.site_id == DEMO_ID, ChangeRow.feature_id == fid)
            .order_by(ChangeRow.seq)
        ).all()
        session.expunge_all()
        return list(rows)


def log_size(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(ChangeRow)) or 0


def alice_renames(db: Database, fid: str = "Z-001", name: str = "Alice's name") -> layers.Feature:
    before = zone(db, fid)
    return layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        fid,
        {"properties": {"name": name}},
        actor="alice",
        if_match=before.version,
        partial=True,
    )


def alice_renames_over_http(
    client: TestClient, db: Database, fid: str = "Z-001", name: str = "Alice's name"
) -> None:
    """Alice's edit through the API, as the server's walls hear of it (an edit made beside
    the running app would be followed by it in the background, past the test's end)."""
    answer = client.patch(
        f"{ZONES}/features/{fid}",
        json={"properties": {"name": name}},
        headers={**sign_in(db, "alice", [Role.PLANNER]), "If-Match": str(zone(db, fid).version)},
    )
    assert answer.status_code == 200, answer.text


def minute(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") + " UTC"


# --- the layers API -----------------------------------------------------------------------------


def test_disjoint_attributes_merge_automatically(db: Database) -> None:
    base = zone(db)
    alice_renames(db)
    report = layers.EditReport()
    merged = layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        as_body(base, capacity=base.properties["capacity"] + 5),
        actor="bob",
        report=report,
    )
    assert merged.version == base.version + 2 and merged.updated_by == "bob"
    stored = zone(db)
    assert stored.properties["name"] == "Alice's name"
    assert stored.properties["capacity"] == base.properties["capacity"] + 5
    assert report.merged is not None
    assert report.merged["base"] == base.version
    assert [t["actor"] for t in report.merged["theirs"]] == ["alice"]
    assert (report.merged["fields_mine"], report.merged["fields_theirs"]) == (
        ["capacity"],
        ["name"],
    )
    last = log_of(db, "Z-001")[-1]
    assert (last.version, last.actor, last.action) == (merged.version, "bob", "update")
    assert last.note == f"merged with version {base.version + 1} by alice"
    assert last.data is not None and last.data["properties"]["name"] == "Alice's name"


def test_same_attribute_changed_differently_is_refused_with_who_when_what(db: Database) -> None:
    base = zone(db)
    alice_renames(db)
    alices = log_of(db, "Z-001")[-1]
    size = log_size(db)
    with pytest.raises(VersionConflict) as exc:
        layers.replace_feature(
            db, DEMO_ID, "zones", "Z-001", as_body(base, name="Bob's name"), actor="bob"
        )
    assert not isinstance(exc.value, PreconditionFailed) and exc.value.status_code == 409
    detail = exc.value.detail
    for part in ("alice", minute(alices.at), f"'{base.properties['name']}' → 'Alice's name'"):
        assert part in detail, (part, detail)
    assert "Bob's name" in detail and f"your version {base.version}" in detail
    conflict = exc.value.extra["conflict"]
    assert (conflict["yours"], conflict["current"]) == (base.version, base.version + 1)
    assert conflict["conflicting"] == ["name"] and conflict["merged"] is None
    (change,) = conflict["changes"]
    assert change["actor"] == "alice" and change["geometry"] is False
    assert change["fields"] == {
        "name": {"before": base.properties["name"], "after": "Alice's name"}
    }
    assert datetime.fromisoformat(change["at"]) == alices.at
    assert {e.field for e in exc.value.errors} == {"version", "properties.name"}
    assert zone(db).properties["name"] == "Alice's name" and log_size(db) == size


def test_geometry_and_attribute_edits_merge(db: Database) -> None:
    base = zone(db)
    layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        {"geometry": moved(base, 2e-6)},
        actor="alice",
        if_match=base.version,
        partial=True,
    )
    moved_by_alice = zone(db).geometry
    layers.replace_feature(
        db, DEMO_ID, "zones", "Z-001", as_body(base, risk_grade="red"), actor="bob"
    )
    stored = zone(db)
    assert stored.properties["risk_grade"] == "red" and stored.version == base.version + 2
    assert stored.geometry is not None and stored.geometry.equals(moved_by_alice)
    assert log_of(db, "Z-001")[-1].note == f"merged with version {base.version + 1} by alice"


def test_both_moving_the_geometry_is_a_conflict(db: Database) -> None:
    base = zone(db)
    layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        {"geometry": moved(base, 2e-6)},
        actor="alice",
        if_match=base.version,
        partial=True,
    )
    mine = {**as_body(base, capacity=99), "geometry": moved(base, -2e-6)}
    with pytest.raises(VersionConflict) as exc:
        layers.replace_feature(db, DEMO_ID, "zones", "Z-001", mine, actor="bob")
    conflict = exc.value.extra["conflict"]
    assert conflict["conflicting"] == ["geometry"] and conflict["merged"] is None
    assert conflict["changes"][0]["geometry"] is True and conflict["changes"][0]["fields"] == {}
    assert "the geometry" in exc.value.detail and "alice" in exc.value.detail
    assert zone(db).properties["capacity"] == base.properties["capacity"]


def test_patch_is_merged_over_its_base(db: Database) -> None:
    base = zone(db)
    alice_renames(db)
    # Bob's patch names only capacity: mine is base + patch, so alice's name stays.
    patched = layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        {"properties": {"capacity": 3, "version": base.version}},
        actor="bob",
        partial=True,
    )
    assert patched.properties == {**base.properties, "name": "Alice's name", "capacity": 3}
    # A patch of the name, on the same old version, conflicts with alice's.
    with pytest.raises(VersionConflict) as exc:
        layers.replace_feature(
            db,
            DEMO_ID,
            "zones",
            "Z-001",
            {"properties": {"name": "Carol's", "version": base.version}},
            actor="carol",
            partial=True,
        )
    assert exc.value.extra["conflict"]["conflicting"] == ["name"]
    assert [c["actor"] for c in exc.value.extra["conflict"]["changes"]] == ["alice", "bob"]
    assert "By bob" in exc.value.detail and "capacity 20 → 3" in exc.value.detail


def test_merged_edits_that_break_a_rule_are_refused(db: Database) -> None:
    sensor = {
        "type": "Feature",
        "id": "S-merge",
        "geometry": {"type": "Point", "coordinates": [121.35, 30.72]},
        "properties": {"kind": "gas", "substance": "H2S", "unit": "ppm", "warning": 10,
                       "alarm": 20, "high_alarm": 30},
    }  # fmt: skip
    layers.create_feature(db, DEMO_ID, "sensors", sensor, actor="setup")
    patch = {"properties": {"alarm": 28}}
    layers.replace_feature(
        db, DEMO_ID, "sensors", "S-merge", patch, actor="alice", if_match=1, partial=True
    )
    # Alone, each edit keeps the tiers rising; together (alarm 28, high alarm 25) they do not.
    with pytest.raises(VersionConflict) as exc:
        layers.replace_feature(
            db,
            DEMO_ID,
            "sensors",
            "S-merge",
            {"properties": {"high_alarm": 25, "version": 1}},
            actor="bob",
            partial=True,
        )
    conflict = exc.value.extra["conflict"]
    assert conflict["merged"] is None and conflict["conflicting"] == ["alarm", "high_alarm"]
    assert "thresholds must rise" in exc.value.detail
    stored = layers.get_feature(db, DEMO_ID, "sensors", "S-merge")
    assert (stored.version, stored.properties["high_alarm"]) == (2, 30)


def test_a_version_the_log_never_had_is_explained_not_merged(db: Database) -> None:
    body = as_body(zone(db), capacity=1)
    del body["properties"]["version"]
    with pytest.raises(VersionConflict) as exc:
        layers.replace_feature(db, DEMO_ID, "zones", "Z-001", body, actor="bob", if_match=9)
    assert isinstance(exc.value, PreconditionFailed)
    assert exc.value.extra["conflict"]["merged"] is None
    assert "Version 9 is newer than the feature" in exc.value.detail


# --- HTTP: body version, If-Match, deletion --------------------------------------------------


def test_http_merge_is_announced(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "bob", [Role.PLANNER]))
    base = zone(db)
    alice_renames_over_http(client, db)
    answer = client.put(
        f"{ZONES}/features/Z-001", json=as_body(base, capacity=base.properties["capacity"] + 1)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["etag"] == f'"{base.version + 2}"'
    header = answer.headers["rallypoint-merged"]
    assert header.isascii()
    assert f"version {base.version} merged with {base.version + 1} (name)" in header
    assert "yours: capacity" in header and f"now version {base.version + 2}" in header
    body = answer.json()
    assert body["merged"]["fields_mine"] == ["capacity"]
    assert body["merged"]["theirs"][0]["actor"] == "alice"
    assert body["properties"]["name"] == "Alice's name"
    assert client.get(f"{ZONES}/features/Z-001").json()["properties"]["capacity"] == (
        base.properties["capacity"] + 1
    )


def test_http_conflict_is_409_and_changes_nothing(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "bob", [Role.PLANNER]))
    base = zone(db)
    alice_renames_over_http(client, db)
    size = log_size(db)
    refused = client.patch(
        f"{ZONES}/features/Z-001", json={"properties": {"name": "B", "version": base.version}}
    )
    problem = assert_problem(refused, 409, field="properties.name")
    assert problem["conflict"]["changes"][0]["actor"] == "alice"
    assert "alice" in problem["detail"] and "'B'" in problem["detail"]
    assert zone(db).properties["name"] == "Alice's name" and log_size(db) == size


def test_stale_if_match_is_412_with_the_merge_proposed(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "bob", [Role.PLANNER]))
    base = zone(db)
    alice_renames_over_http(client, db)
    size = log_size(db)
    mine = as_body(base, capacity=7)
    del mine["properties"]["version"]
    stale = client.put(
        f"{ZONES}/features/Z-001", json=mine, headers={"If-Match": f'"{base.version}"'}
    )
    problem = assert_problem(stale, 412, field="version")
    assert zone(db).version == base.version + 1 and log_size(db) == size  # nothing changed
    proposal = problem["conflict"]["merged"]
    assert proposal["properties"]["name"] == "Alice's name"
    assert proposal["properties"]["capacity"] == 7
    assert proposal["properties"]["version"] == base.version + 1
    assert shape(proposal["geometry"]).equals(base.geometry)
    assert f'If-Match "{base.version + 1}"' in problem["detail"]
    del proposal["properties"]["version"]
    again = client.put(
        f"{ZONES}/features/Z-001", json=proposal, headers={"If-Match": f'"{base.version + 1}"'}
    )
    assert again.status_code == 200 and "rallypoint-merged" not in again.headers
    assert zone(db).properties == {**base.properties, "name": "Alice's name", "capacity": 7}


def test_a_stale_delete_is_refused_with_the_explanation(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "bob", [Role.PLANNER]))
    base = zone(db)
    alice_renames_over_http(client, db)
    url = f"{ZONES}/features/Z-001"
    by_query = assert_problem(client.delete(url, params={"version": base.version}), 409)
    by_header = assert_problem(client.delete(url, headers={"If-Match": str(base.version)}), 412)
    for problem in (by_query, by_header):
        assert problem["conflict"]["merged"] is None
        assert problem["conflict"]["conflicting"] == ["name"]
        assert "alice" in problem["detail"] and "delete version" in problem["detail"]
    assert client.get(url).status_code == 200


# --- imports ----------------------------------------------------------------------------------


def edited_export(db: Database, client: TestClient | None = None) -> tuple[dict[str, Any], bytes]:
    """A zones export whose Z-001 and Z-002 are then changed by alice, and the file edited by
    the planner: Z-001's capacity (mergeable), Z-002's name (conflicting), Z-003's capacity
    (not stale), and a new zone."""
    doc = json.loads(export_layer(db, DEMO_ID, "zones", FileFormat.GEOJSON))
    for fid, name in (("Z-001", "Alice 1"), ("Z-002", "Alice 2")):
        if client is None:
            alice_renames(db, fid, name)
        else:
            alice_renames_over_http(client, db, fid, name)
    rows = {f["id"]: f for f in doc["features"]}
    rows["Z-001"]["properties"]["capacity"] = 11
    rows["Z-002"]["properties"]["name"] = "Planner 2"
    rows["Z-003"]["properties"]["capacity"] = 33
    new = json.loads(json.dumps(rows["Z-003"]))
    new["id"] = "Z-new"
    del new["properties"]["version"]
    doc["features"].append(new)
    return doc, json.dumps(doc).encode()


def row_of(doc: dict[str, Any], fid: str) -> int:
    return next(n for n, f in enumerate(doc["features"], start=1) if f["id"] == fid)


def test_import_without_merge_lists_every_conflict_and_changes_nothing(db: Database) -> None:
    doc, data = edited_export(db)
    before = {f.id: (f.version, f.properties) for f in layers.list_features(db, DEMO_ID, "zones")}
    size = log_size(db)
    with pytest.raises(VersionConflict) as exc:
        import_file(db, DEMO_ID, "zones", data, FileFormat.GEOJSON, actor="planner")
    assert not isinstance(exc.value, InvalidInput)
    found = {c["feature"]: c for c in exc.value.extra["conflicts"]}
    assert set(found) == {"Z-001", "Z-002"}
    assert found["Z-001"]["row"] == row_of(doc, "Z-001") and found["Z-001"]["merged"]
    assert found["Z-002"]["conflicting"] == ["name"] and found["Z-002"]["merged"] is None
    reasons = {e.row: e.reason for e in exc.value.errors}
    assert "Mergeable" in reasons[row_of(doc, "Z-001")]
    assert "Not mergeable" in reasons[row_of(doc, "Z-002")]
    assert "alice" in reasons[row_of(doc, "Z-002")] and "'Alice 2'" in reasons[row_of(doc, "Z-002")]
    assert "2 row(s)" in exc.value.detail and "1 of them mergeable" in exc.value.detail
    after = {f.id: (f.version, f.properties) for f in layers.list_features(db, DEMO_ID, "zones")}
    assert after == before and log_size(db) == size


def test_import_with_merge_applies_the_clean_ones_and_lists_the_rest(db: Database) -> None:
    doc, data = edited_export(db)
    report = import_file(db, DEMO_ID, "zones", data, FileFormat.GEOJSON, actor="p", merge=True)
    assert (report.created, report.updated, report.merged) == (1, 1, 1)
    (skipped,) = report.conflicts
    assert skipped["feature"] == "Z-002" and skipped["row"] == row_of(doc, "Z-002")
    assert "alice" in skipped["detail"]
    assert "1 row(s) skipped" in report.summary() and "Z-002" in report.summary()
    z1, z2, z3 = (zone(db, f"Z-00{n}") for n in (1, 2, 3))
    assert (z1.properties["name"], z1.properties["capacity"]) == ("Alice 1", 11)
    assert z1.updated_by == "p" and z2.updated_by == "alice"
    assert z2.properties["name"] == "Alice 2" and z3.properties["capacity"] == 33
    assert (
        log_of(db, "Z-001")[-1].note
        == f"import (merge); merged with version {z1.version - 1} by alice"
    )
    assert zone(db, "Z-new").version == 1


def test_import_route_merges_on_request(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "bob", [Role.PLANNER]))
    doc, data = edited_export(db, client)
    url = f"{ZONES}/import"
    headers = {"Content-Type": "application/geo+json"}
    refused = assert_problem(client.post(url, content=data, headers=headers), 409, field="version")
    assert len(refused["conflicts"]) == 2
    assert {e["row"] for e in refused["errors"]} == {row_of(doc, "Z-001"), row_of(doc, "Z-002")}
    merged = client.post(url, content=data, headers=headers, params={"merge": "true"})
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert (body["merged"], body["skipped"]) == (1, 1)
    assert body["conflicts"][0]["feature"] == "Z-002"


def test_invalid_rows_still_refuse_a_merging_import(db: Database) -> None:
    doc, _ = edited_export(db)
    doc["features"][row_of(doc, "Z-003") - 1]["properties"]["kind"] = "volcano"
    with pytest.raises(InvalidInput) as exc:
        import_file(
            db,
            DEMO_ID,
            "zones",
            json.dumps(doc).encode(),
            FileFormat.GEOJSON,
            actor="p",
            merge=True,
        )
    assert {e.row for e in exc.value.errors} >= {row_of(doc, "Z-003"), row_of(doc, "Z-002")}
    assert zone(db, "Z-001").properties["capacity"] != 11


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["site", "load", str(DEMO_SITE)]).exit_code == 0
    return runner


def test_cli_merge(cli: CliRunner, tmp_path: Path) -> None:
    exported = tmp_path / "zones.geojson"
    assert cli.invoke(main, ["layer", "export", DEMO_ID, "zones", str(exported)]).exit_code == 0
    doc = json.loads(exported.read_text())
    # Meanwhile someone else edits Z-001's and Z-002's names (through the same command).
    theirs = json.loads(json.dumps(doc))
    for feature in theirs["features"]:
        if feature["id"] in ("Z-001", "Z-002"):
            feature["properties"]["name"] = f"Theirs {feature['id']}"
    (tmp_path / "theirs.geojson").write_text(json.dumps(theirs))
    first = cli.invoke(
        main, ["layer", "import", DEMO_ID, "zones", str(tmp_path / "theirs.geojson")]
    )
    assert first.exit_code == 0 and "2 updated" in first.output, first.output
    for feature in doc["features"]:
        if feature["id"] == "Z-001":
            feature["properties"]["capacity"] = 44
        if feature["id"] == "Z-002":
            feature["properties"]["name"] = "Mine"
    mine = tmp_path / "mine.geojson"
    mine.write_text(json.dumps(doc))
    refused = cli.invoke(main, ["layer", "import", DEMO_ID, "zones", str(mine)])
    assert refused.exit_code == 1
    assert "1 of them mergeable" in refused.output and "Not mergeable" in refused.output
    merged = cli.invoke(main, ["layer", "import", DEMO_ID, "zones", str(mine), "--merge"])
    assert merged.exit_code == 0, merged.output
    assert "1 merged" in merged.output and "1 row(s) skipped" in merged.output
    assert "skipped:" in merged.output and "'Theirs Z-002'" in merged.output
    again = tmp_path / "again.geojson"
    cli.invoke(main, ["layer", "export", DEMO_ID, "zones", str(again)])
    now = {f["id"]: f["properties"] for f in json.loads(again.read_text())["features"]}
    assert (now["Z-001"]["name"], now["Z-001"]["capacity"]) == ("Theirs Z-001", 44)
    assert now["Z-002"]["name"] == "Theirs Z-002"
