"""Bulk import and export of a layer as GeoJSON, GeoPackage or Shapefile.

A planner round-trips a layer through QGIS: export, edit, import. An import is all-or-nothing:
every row is validated through the same door as the API, every bad row is reported (row number,
field, reason) and, if there is any, nothing changes.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from gis import topology
from gis.conflicts import Conflict, logged_changes, snapshot, three_way
from gis.errors import (
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedFormat,
    VersionConflict,
)
from gis.layers import (
    META_FIELDS,
    Feature,
    ParsedFeature,
    delete_row,
    get_layer,
    insert_features,
    jsonable,
    list_features,
    parse_feature,
    parse_features,
    read_features,
    since,
    update_row,
)
from gis.model import Layer
from gis.nesting import check_json_depth
from gis.sites import Site, load_site
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS

log = logging.getLogger(__name__)

#: Stop collecting row errors after this many; the report says it was cut short.
MAX_REPORTED_ERRORS = 500
#: A zipped Shapefile holds a handful of files (.shp, .shx, .dbf, .prj, .cpg, an index or two).
MAX_ZIP_MEMBERS = 64
#: dBase text fields hold at most 254 bytes.
DBF_TEXT_BYTES = 254


class FileFormat(StrEnum):
    GEOJSON = "geojson"
    GPKG = "gpkg"
    SHAPEFILE = "shp"

    @property
    def media_type(self) -> str:
        return {
            "geojson": "application/geo+json",
            "gpkg": "application/geopackage+sqlite3",
            "shp": "application/zip",
        }[self.value]

    @property
    def suffix(self) -> str:
        return {"geojson": ".geojson", "gpkg": ".gpkg", "shp": ".shp.zip"}[self.value]


def parse_format(value: str) -> FileFormat:
    aliases = {"json": "geojson", "geopackage": "gpkg", "shapefile": "shp", "zip": "shp"}
    try:
        return FileFormat(aliases.get(value.lower(), value.lower()))
    except ValueError:
        raise UnsupportedFormat(
            f"unsupported format {value!r}",
            errors=[FieldError("format", "one of geojson, gpkg, shp (a zipped Shapefile)")],
        ) from None


def format_from_path(path: Path) -> FileFormat:
    name = path.name.lower()
    if name.endswith((".geojson", ".json")):
        return FileFormat.GEOJSON
    if name.endswith(".gpkg"):
        return FileFormat.GPKG
    if name.endswith(".zip"):
        return FileFormat.SHAPEFILE
    if name.endswith(".shp"):
        raise UnsupportedFormat(
            f"{path.name}: a Shapefile travels as a .zip of its .shp, .shx, .dbf and .prj files",
            errors=[FieldError("file", "name it .zip")],
        )
    raise UnsupportedFormat(f"cannot tell the format of {path.name}; name it .geojson/.gpkg/.zip")


# --- reading files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    """One feature as read from a file, before validation (``row`` is 1-based)."""

    row: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much a zipped Shapefile may unpack to (``RALLYPOINT_MAX_UNZIPPED_BYTES``,
    ``RALLYPOINT_MAX_UNZIP_RATIO``).

    A zip of half a megabyte can hold half a gigabyte of zeros. The sizes the archive declares
    are checked before anything is written, and the bytes really written are counted as well,
    since declared sizes can lie. A member may expand at most ``max_ratio`` times; one under
    ``ratio_floor`` bytes is not held to it (a tiny file of blanks compresses very well).
    Real layers stay far below: the demo site's Shapefiles expand at most 74 times.
    """

    max_bytes: int = 200 * 1024 * 1024
    max_ratio: float = 500.0
    ratio_floor: int = 1024 * 1024


def read_rows(
    data: bytes, fmt: FileFormat, *, limits: ArchiveLimits = ArchiveLimits()
) -> list[RawRow]:
    """Rows of a layer file as GeoJSON-like features; unreadable files are refused whole."""
    if fmt is FileFormat.GEOJSON:
        return _read_geojson(data)
    with tempfile.TemporaryDirectory(prefix="rallypoint-import-") as tmp:
        path = Path(tmp) / ("layer.gpkg" if fmt is FileFormat.GPKG else "layer.zip")
        path.write_bytes(data)
        if fmt is FileFormat.SHAPEFILE:
            path = _unzip_shapefile(path, limits)
        try:
            frame = pyogrio.read_dataframe(path)
        except Exception as exc:  # pyogrio raises a zoo of GDAL errors; all mean "unreadable"
            # GDAL's words name the temporary file and the SQL it ran: the log's, not the client's.
            log.info("an uploaded %s file is unreadable: %s", fmt.value, exc)
            raise InvalidInput(
                f"cannot read the {fmt.value} file: GDAL cannot open it as {fmt.value}",
                errors=[FieldError("file", f"not a readable {fmt.value} file")],
            ) from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InvalidInput(
            f"the {fmt.value} file has no geometry column",
            errors=[FieldError("file", "a layer with geometries is expected")],
        )
    return _rows_from_frame(frame)


def _read_geojson(data: bytes) -> list[RawRow]:
    check_json_depth(data, field="file")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput(
            f"not JSON: {exc}", errors=[FieldError("file", "not a JSON document")]
        ) from exc
    return rows_from_collection(doc)


def rows_from_collection(doc: Any) -> list[RawRow]:
    """Rows of a GeoJSON FeatureCollection already parsed from JSON."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InvalidInput(
            "a GeoJSON import must be a FeatureCollection",
            errors=[FieldError("type", "must be 'FeatureCollection'")],
        )
    features = doc.get("features")
    if not isinstance(features, list):
        raise InvalidInput(
            "FeatureCollection without a features array",
            errors=[FieldError("features", "must be an array")],
        )
    rows = []
    for n, feature in enumerate(features, start=1):
        rows.append(RawRow(n, feature if isinstance(feature, dict) else {"type": None}))
    return rows


def _unzip_shapefile(path: Path, limits: ArchiveLimits) -> Path:
    """Unpack a zipped Shapefile beside ``path``, within ``limits``; the ``.shp`` file.

    Nothing unpacked is left behind when the archive is refused.
    """
    folder = path.parent / "shp"
    folder.mkdir()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_declared(members, limits)
            left = limits.max_bytes
            for member in members:
                name = Path(member.filename).name
                if name in {"", ".", ".."}:
                    continue
                left -= _unpack(archive, member, folder / name, left, limits)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        RuntimeError,
        NotImplementedError,
        OSError,
        EOFError,
    ) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InvalidInput(
            f"a Shapefile import must be a plain .zip of its .shp, .shx, .dbf and .prj: {exc}",
            errors=[FieldError("file", "not a readable zip archive")],
        ) from exc
    except (InvalidInput, PayloadTooLarge):
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shps = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".shp")
    if len(shps) != 1:
        raise InvalidInput(
            f"the zip holds {len(shps)} .shp files; it must hold exactly one",
            errors=[FieldError("file", "exactly one .shp file expected")],
        )
    return shps[0]


def _check_declared(members: Sequence[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Refuse an archive by what it says it holds, before unpacking any of it."""
    if len(members) > MAX_ZIP_MEMBERS:
        raise InvalidInput(
            f"the zip holds {len(members)} files; a Shapefile needs a handful",
            errors=[FieldError("file", f"at most {MAX_ZIP_MEMBERS} files")],
        )
    total = 0
    for member in members:
        total += member.file_size
        if total > limits.max_bytes:
            raise _unpacks_too_much(member.filename, limits)
        _check_ratio(member, member.file_size, limits)


def _unpack(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    target: Path,
    left: int,
    limits: ArchiveLimits,
) -> int:
    """Copy one member to ``target``, counting what really comes out; the bytes written."""
    written = 0
    with archive.open(member) as source, target.open("wb") as sink:
        while chunk := source.read(1024 * 1024):
            written += len(chunk)
            if written > left:
                raise _unpacks_too_much(member.filename, limits)
            _check_ratio(member, written, limits)
            sink.write(chunk)
    return written


def _check_ratio(member: zipfile.ZipInfo, size: int, limits: ArchiveLimits) -> None:
    if size > limits.ratio_floor and size > limits.max_ratio * max(member.compress_size, 1):
        raise PayloadTooLarge(
            f"{member.filename} expands more than {limits.max_ratio:g} times: refused as a zip "
            "bomb, and nothing was unpacked or changed",
            errors=[
                FieldError(
                    "file",
                    f"{member.filename}: {member.compress_size} bytes expanding to over {size}",
                )
            ],
        )


def _unpacks_too_much(name: str, limits: ArchiveLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the zip unpacks to more than {limits.max_bytes} bytes (at {name}): refused, and "
        "nothing was unpacked or changed",
        errors=[FieldError("file", f"{name}: over {limits.max_bytes} bytes unpacked in all")],
    )


def _rows_from_frame(frame: gpd.GeoDataFrame) -> list[RawRow]:
    crs = frame.crs
    if crs is not None and crs.to_epsg() != 4326:
        try:
            frame = frame.to_crs(4326)
        except Exception as exc:  # pyproj's errors for CRSs it cannot transform
            raise InvalidInput(
                f"cannot transform the file's CRS to WGS84: {exc}",
                errors=[FieldError("crs", "the file's CRS cannot be transformed to EPSG:4326")],
            ) from exc
    columns = [c for c in frame.columns if c != frame.geometry.name]
    geoms: Sequence[BaseGeometry | None] = list(frame.geometry)
    rows = []
    for n, (values, geom) in enumerate(
        zip(frame[columns].itertuples(index=False, name=None), geoms, strict=True), start=1
    ):
        props = {c: _plain(v) for c, v in zip(columns, values, strict=True)}
        props = {k: v for k, v in props.items() if v is not None}
        rows.append(RawRow(n, {"type": "Feature", "geometry": geom, "properties": props}))
    return rows


def _plain(value: Any) -> Any:
    """A Python value from what pandas holds (NaN and NaT are missing values)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


# --- importing --------------------------------------------------------------------------------


class ImportMode(StrEnum):
    MERGE = "merge"  # add new features, update existing ones (their version must match)
    REPLACE = "replace"  # the file becomes the layer: features not in it are deleted


@dataclass
class ImportReport:
    layer: str
    mode: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[FieldError] = field(default_factory=list)
    #: Rows changed by others since the file was read, merged with those changes (``merge``).
    merged: int = 0
    #: Rows skipped (``merge``) because both edits changed a field: each a conflict
    #: description (``Conflict.to_json`` with ``row`` and ``detail``).
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    #: Topology warnings (a door cut off, naming the parts), in words and as data
    #: (:meth:`gis.topology.Violation.to_json`).
    warnings: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "mode": self.mode,
            "created": self.created,
            "updated": self.updated,
            "merged": self.merged,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": len(self.conflicts),
            "conflicts": self.conflicts,
            "warnings": self.warnings,
            "violations": self.violations,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        text = (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deleted} deleted, {self.merged} merged"
        )
        if self.conflicts:
            rows = ", ".join(f"row {c['row']} ({c['feature']})" for c in self.conflicts)
            text += (
                f"; {len(self.conflicts)} row(s) skipped, changed by others in the same "
                f"fields: {rows}"
            )
        return text


def import_rows(
    db: Database,
    site_id: str,
    layer_name: str,
    rows: Sequence[RawRow],
    *,
    actor: str,
    mode: ImportMode = ImportMode.MERGE,
    merge: bool = False,
    check_topology: bool = True,
) -> ImportReport:
    """Validate every row, then apply all of them in one transaction, or none.

    A row of a version others changed since (stale) refuses the import too, with who changed
    what. With ``merge``, such a row is merged three-way with those changes when the two edits
    changed different fields, skipped (and listed in the report) when not, and the rest of the
    file is applied."""
    layer = get_layer(layer_name)
    with db.write() as session:
        site = load_site(session, site_id)
        report = ImportReport(layer.name, mode.value)
        model = LAYER_ROWS[layer.name]
        existing = {r.id: r for r in session.scalars(select(model).where(model.site_id == site_id))}
        parsed: list[tuple[int, ParsedFeature]] = []
        stale: list[tuple[int, ParsedFeature]] = []
        seen: dict[str, int] = {}
        errors: list[FieldError] = []
        # Validated together (geometries as arrays), then looked at row by row.
        results = parse_features(
            layer,
            [raw.data for raw in rows],
            extent=site.extent,
            rows=[raw.row for raw in rows],
            prefix="",
        )
        for raw, feature in zip(rows, results, strict=True):
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            if isinstance(feature, InvalidInput):
                errors.extend(feature.errors)
                continue
            if feature.id is not None:
                if feature.id in seen:
                    errors.append(
                        FieldError("id", f"duplicate id, also in row {seen[feature.id]}", raw.row)
                    )
                    continue
                seen[feature.id] = raw.row
                current = existing.get(feature.id)
                if current is None and feature.version is not None:
                    # Exported at that version, deleted since: do not bring it back unasked.
                    errors.append(
                        FieldError(
                            "version",
                            f"the feature was deleted after version {feature.version}; "
                            "remove its version to create it again",
                            raw.row,
                        )
                    )
                    continue
                if current is not None and feature.version not in (None, current.version):
                    stale.append((raw.row, feature))  # explained, and maybe merged, below
                    continue
                if current is not None and mode is ImportMode.MERGE and feature.version is None:
                    errors.append(
                        FieldError(
                            "version",
                            f"feature exists (version {current.version}); give its version "
                            "to update it, or import with mode=replace",
                            raw.row,
                        )
                    )
                    continue
            parsed.append((raw.row, feature))
        found = _stale_rows(session, site, layer, stale)
        listed = {"conflicts": [c.to_json() for c, _ in found[:MAX_REPORTED_ERRORS]]}
        if errors:
            cut = (
                " (only the first errors are listed)" if len(errors) >= MAX_REPORTED_ERRORS else ""
            )
            bad_rows = len({e.row for e in errors})
            room = max(0, MAX_REPORTED_ERRORS - len(errors))
            errors.extend(_stale_error(c) for c, _ in found[:room])
            raise InvalidInput(
                f"the import was refused and nothing changed: {bad_rows} bad row(s){cut}",
                errors=errors,
                extra=listed if found else None,
            )
        if found and not merge:
            mergeable = sum(1 for _, m in found if m is not None)
            cut = " (only the first are listed)" if len(found) > MAX_REPORTED_ERRORS else ""
            raise VersionConflict(
                f"the import was refused and nothing changed: {len(found)} row(s) were changed "
                f"by others since the file was read, {mergeable} of them mergeable (import with "
                f"merge=true, or --merge, to apply those and skip the others){cut}",
                errors=[_stale_error(c) for c, _ in found[:MAX_REPORTED_ERRORS]],
                extra=listed,
            )
        for conflict, merged in found:
            if merged is not None:
                parsed.append((conflict.row or 0, merged))
            else:
                report.conflicts.append(
                    {**conflict.to_json(), "detail": conflict.describe(header=False)}
                )
        notes = {m.id: c.note() for c, m in found if m is not None}

        # The topology rules are checked once, after every row is applied (``check_topology``
        # False: the caller checks the whole site afterwards, as a bundle load does).
        rules = (
            topology.ImportCheck.begin(db, session, site, layer.name) if check_topology else None
        )
        now = datetime.now(UTC)
        note = f"import ({mode.value})"
        new = []
        for _, feature in parsed:
            current = existing.get(feature.id) if feature.id is not None else None
            if current is None:
                new.append(feature)
                continue
            merged_note = notes.get(current.id)
            _, changed = update_row(
                session,
                site_id,
                layer,
                current,
                feature,
                actor=actor,
                now=now,
                note=note if merged_note is None else f"{note}; {merged_note}",
            )
            if changed and merged_note is not None:
                report.merged += 1
            elif changed:
                report.updated += 1
            else:
                report.unchanged += 1
        if new:
            insert_features(session, site_id, layer, new, actor=actor, now=now, note=note)
            report.created = len(new)
        if mode is ImportMode.REPLACE:
            for fid, current in existing.items():
                if fid not in seen:
                    delete_row(session, site_id, layer, current, actor=actor, now=now, note=note)
                    report.deleted += 1
        if rules is not None:
            rules.finish(session, seen, report)
        return report


def import_file(
    db: Database,
    site_id: str,
    layer_name: str,
    data: bytes,
    fmt: FileFormat,
    *,
    actor: str,
    mode: ImportMode = ImportMode.MERGE,
    limits: ArchiveLimits = ArchiveLimits(),
    merge: bool = False,
) -> ImportReport:
    rows = read_rows(data, fmt, limits=limits)
    return import_rows(db, site_id, layer_name, rows, actor=actor, mode=mode, merge=merge)


def _stale_rows(
    session: Session, site: Site, layer: Layer, stale: Sequence[tuple[int, ParsedFeature]]
) -> list[tuple[Conflict, ParsedFeature | None]]:
    """Rows of versions others changed since: each one's conflict (who changed what), with
    the merged feature to apply when the merge is clean and valid."""
    if not stale:
        return []
    ids = [feature.id for _, feature in stale if feature.id is not None]
    current = {f.id: f for f in read_features(session, site.id, layer.name, ids=ids)}
    logs = logged_changes(session, site.id, layer.name, ids)
    out: list[tuple[Conflict, ParsedFeature | None]] = []
    for row, feature in stale:
        assert feature.id is not None and feature.version is not None  # a stale row has both
        held = current[feature.id]
        past, theirs = since(layer, logs[feature.id], held, feature.version)
        conflict = three_way(
            layer,
            held.id,
            feature.version,
            past,
            current_version=held.version,
            theirs=theirs,
            mine=snapshot(feature.properties, feature.geometry),
        )
        conflict.row = row
        merged: ParsedFeature | None = None
        if conflict.merged is not None:
            try:
                merged = parse_feature(
                    layer, conflict.merged, extent=site.extent, row=row, prefix=""
                )
            except InvalidInput as exc:
                conflict.refuse_merge(
                    "; ".join(f"{e.field}: {e.reason}" for e in exc.errors),
                    [e.field for e in exc.errors],
                )
        out.append((conflict, merged))
    return out


def _stale_error(conflict: Conflict) -> FieldError:
    """A stale row in the refusal's list: who changed what, and whether it merges."""
    if conflict.clean:
        mine = ", ".join(conflict.fields_mine) or "nothing new"
        verdict = (
            f"Mergeable: the row changes {mine}, which the others left alone; import with "
            "merge=true (--merge) to apply it over their changes."
        )
    else:
        verdict = f"Not mergeable. {conflict.advice(header=False)}"
    return FieldError("version", f"stale: {conflict.summary()} {verdict}", conflict.row)


# --- exporting --------------------------------------------------------------------------------


def features_to_geojson(features: Sequence[Feature]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [f.to_geojson() for f in features]}


def export_layer(db: Database, site_id: str, layer_name: str, fmt: FileFormat) -> bytes:
    layer = get_layer(layer_name)
    features = list_features(db, site_id, layer.name)
    if fmt is FileFormat.GEOJSON:
        return json.dumps(features_to_geojson(features), ensure_ascii=False).encode()
    if fmt is FileFormat.SHAPEFILE:
        _check_one_geometry_type(layer.name, features)
    frame = _frame(layer, features)
    with tempfile.TemporaryDirectory(prefix="rallypoint-export-") as tmp:
        if fmt is FileFormat.GPKG:
            path = Path(tmp) / f"{layer.name}.gpkg"
            pyogrio.write_dataframe(frame, path, layer=layer.name, driver="GPKG")
            return path.read_bytes()
        _check_dbf_text(frame)
        path = Path(tmp) / f"{layer.name}.shp"
        pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", encoding="UTF-8")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in sorted(Path(tmp).glob(f"{layer.name}.*")):
                archive.write(part, part.name)
        return buffer.getvalue()


def _check_one_geometry_type(layer_name: str, features: Sequence[Feature]) -> None:
    """Refuse a Shapefile export of points, lines and polygons together (the basemap's,
    the receptors'): a Shapefile holds one geometry type."""
    kinds = {f.geometry.geom_type.removeprefix("Multi") for f in features if f.geometry}
    if len(kinds) > 1:
        raise InvalidInput(
            f"the {layer_name} layer mixes {', '.join(sorted(kinds))}, and a Shapefile holds "
            "one geometry type; export as GeoPackage or GeoJSON instead",
            errors=[FieldError("format", "a Shapefile holds one geometry type; use gpkg")],
        )


def _frame(layer: Layer, features: Sequence[Feature]) -> gpd.GeoDataFrame:
    """A GeoDataFrame with stable column types, even for an empty layer."""
    records = [{"id": f.id, **jsonable(f.properties), **f.meta()} for f in features]
    columns = ["id", *layer.fields, *META_FIELDS]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.astype(
        {name: _dtype(layer.properties.model_fields[name].annotation) for name in layer.fields}
    )
    frame["version"] = frame["version"].astype("int64")
    geometry = gpd.GeoSeries([f.geometry for f in features], crs="EPSG:4326")
    return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")


def _dtype(annotation: Any) -> str:
    """The pandas dtype for an attribute: nullable integers stay integers in GPKG and SHP."""
    if annotation is bool:
        return "bool"
    if annotation in (int, int | None):
        return "Int64"
    if annotation in (float, float | None):
        return "float64"
    return "object"


def _check_dbf_text(frame: pd.DataFrame) -> None:
    """Refuse a Shapefile export that would cut text (dBase holds 254 bytes a field)."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        for fid, value in zip(frame["id"], frame[column], strict=True):
            if isinstance(value, str) and len(value.encode()) > DBF_TEXT_BYTES:
                raise InvalidInput(
                    f"feature {fid}: {column} is longer than a Shapefile can hold "
                    f"({DBF_TEXT_BYTES} bytes); export as GeoPackage instead",
                    errors=[FieldError(column, f"over {DBF_TEXT_BYTES} bytes in feature {fid}")],
                )
