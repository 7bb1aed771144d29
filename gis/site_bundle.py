"""A site on disk: ``site.json`` plus one GeoJSON FeatureCollection per layer.

The demo site in ``fixtures/demo-site``, the synthetic sites of ``rallypoint fixtures generate``
and OpenStreetMap imports all use this form, and all load through :func:`load_bundle`. Each file
opens directly in QGIS.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy.orm import Session

from gis import topology
from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from gis.layer_io import ImportMode, ImportReport, import_rows, rows_from_collection
from gis.model import LAYERS
from gis.sites import Site, create_site, delete_site, get_site
from gis.storage.bulk import collector_paused
from gis.storage.db import Database
from gis.storage.tables import SiteRow


class IfExists(StrEnum):
    FAIL = "fail"
    SKIP = "skip"
    REPLACE = "replace"


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The site description and each layer's FeatureCollection (missing layers are empty)."""
    site_file = path / "site.json"
    if not site_file.is_file():
        raise NotFound(f"{path} is not a site folder: it has no site.json")
    try:
        site = json.loads(site_file.read_text(encoding="utf-8"))
        layers = {}
        for name in LAYERS:
            layer_file = path / f"{name}.geojson"
            layers[name] = (
                _read_json(layer_file)
                if layer_file.is_file()
                else {"type": "FeatureCollection", "features": []}
            )
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not JSON: {exc}") from exc
    return site, layers


def _read_json(path: Path) -> Any:
    """A JSON file as ``json.loads`` reads it. orjson reads a large layer several times
    faster, and gives the same values for what it accepts; what it refuses (NaN, numbers too
    large for 64 bits, which the layers refuse in turn) is read again by ``json``, so the
    rows are reported as they would be otherwise."""
    text = path.read_text(encoding="utf-8")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def write_bundle(path: Path, site: dict[str, Any], layers: dict[str, dict[str, Any]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "site.json").write_text(json.dumps(site, indent=2, ensure_ascii=False) + "\n")
    for name, collection in layers.items():
        with (path / f"{name}.geojson").open("w", encoding="utf-8") as out:
            # One feature per line: readable diffs, small files.
            out.write('{"type": "FeatureCollection", "features": [\n')
            features = collection["features"]
            for i, feature in enumerate(features):
                sep = ",\n" if i < len(features) - 1 else "\n"
                out.write(json.dumps(feature, ensure_ascii=False, separators=(",", ":")) + sep)
            out.write("]}\n")


def load_bundle(
    db: Database, path: Path, *, actor: str, if_exists: IfExists = IfExists.FAIL
) -> tuple[Site, dict[str, ImportReport] | None]:
    """Create the site and all its layers in one transaction; ``None`` reports when skipped."""
    with collector_paused():  # a large site is a million small objects, none of them cyclic
        return _load_bundle(db, path, actor=actor, if_exists=if_exists)


def _load_bundle(
    db: Database, path: Path, *, actor: str, if_exists: IfExists
) -> tuple[Site, dict[str, ImportReport] | None]:
    site_data, layers = read_bundle(path)
    site_id = site_data.get("id")
    with db.read() as session:
        exists = isinstance(site_id, str) and session.get(SiteRow, site_id) is not None
    if exists and if_exists is IfExists.SKIP:
        return get_site(db, str(site_id)), None
    if exists and if_exists is IfExists.FAIL:
        raise AlreadyExists(
            f"site {site_id!r} exists already (use --if-exists skip or replace)",
            errors=[FieldError("id", "already taken")],
        )
    # One transaction for the lot: the layer imports join it through savepoints.
    reports: dict[str, ImportReport] = {}
    with db.write() as session:
        if exists:
            delete_site(session, str(site_id), actor=actor)
        site = create_site(session, site_data, actor=actor)
        scoped = db.joined(session)
        for name, collection in layers.items():
            try:
                reports[name] = import_rows(
                    scoped,
                    site.id,
                    name,
                    rows_from_collection(collection),
                    actor=actor,
                    mode=ImportMode.MERGE,
                    check_topology=False,  # the whole site, once, below
                )
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{path / (name + '.geojson')}: {exc.detail}", errors=exc.errors
                ) from exc
        _check_topology(db, session, site, path, layers, reports, actor=actor)
    return site, reports


RULES_FILE = "topology-rules.yaml"


def _check_topology(
    db: Database,
    session: Session,
    site: Site,
    path: Path,
    layers: dict[str, dict[str, Any]],
    reports: dict[str, ImportReport],
    *,
    actor: str,
) -> None:
    """Store the bundle's own topology rules (``topology-rules.yaml``, if there is one) and
    check the loaded site against the rules in force: a breach refuses the load, naming the
    file and row; warnings go to the layers' reports."""
    rules_file = path / RULES_FILE
    if rules_file.is_file():
        try:
            data = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
            topology.save_rules(session, site.id, data or {}, actor=actor, if_match=1)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{rules_file}: not YAML: {exc}") from exc
        except InvalidInput as exc:
            raise InvalidInput(f"{rules_file}: {exc.detail}", errors=exc.errors) from exc
    found = topology.check_site(db.joined(session), session, site)
    rows = {
        (name, str(f.get("id"))): n
        for name, collection in layers.items()
        for n, f in enumerate(collection.get("features") or [], start=1)
        if isinstance(f, dict)
    }
    refusals = [v for v in found if v.severity == "refuse"]
    if refusals:
        raise InvalidInput(
            f"{path}: the site breaks its topology rules in {len(refusals)} place(s)",
            errors=[
                FieldError(
                    f"{v.layer}.geojson", f"{v.id}: {v.reason}", rows.get((v.layer, str(v.id)))
                )
                for v in refusals[: topology.MAX_LISTED]
            ],
            extra={"violations": [v.to_json() for v in refusals[: topology.MAX_LISTED]]},
        )
    for v in found:
        if v.layer in reports:
            reports[v.layer].warnings.append(f"{v.id}: {v.reason}")
            reports[v.layer].violations.append(v.to_json())
