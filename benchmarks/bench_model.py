"""Site model benchmark: the full build, and the rebuild after a one-feature edit.

Run: ``.venv/bin/python -m benchmarks.bench_model [--edges 100000] [--people 5000]
[--repeat 5] [--check]``.

The synthetic site (``benchmarks.bench_routing.load_site``) is loaded once into a SQLite file
kept in ``--cache`` (loading takes about a minute); each run works on a copy of it. Measured:

1. **full build**: ``build_site_model``, every layer read and everything built.
2. **one-edit rebuilds**: through ``SiteModels.get``, as the server sees them: a model is
   built, then one feature is changed through the same function the API uses
   (``replace_feature``), and the next ``get`` is timed. Edits: a zone's capacity, a
   resource's status, a person's role, a network edge's width (attributes only), and a network
   edge's geometry (its end moved by about a metre, so its node changes).

With ``--check``, after the edits the model is compared with a full build of the same state.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_routing import load_site
from command.site_model import SiteModel, SiteModels, build_site_model
from gis.layers import get_feature, replace_feature
from gis.site_bundle import load_bundle, write_bundle
from gis.storage.db import Database, make_engine, upgrade


def loaded_database(edges: int, people: int, cache: Path) -> Path:
    """A SQLite file holding the synthetic site, made once and kept in ``cache``."""
    path = cache / f"synthetic-{edges}-{people}.db"
    if not path.is_file():
        site, layers = load_site(edges, people, cache)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            write_bundle(bundle, site, layers)
            partial = cache / f"{path.name}.partial"
            partial.unlink(missing_ok=True)
            engine = make_engine(f"sqlite:///{partial}")
            upgrade(engine)
            load_bundle(Database(engine), bundle, actor="bench")
            engine.dispose()
            partial.rename(path)
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


class Editor:
    """One-feature edits, each a little different from the last (so each is a real change)."""

    def __init__(self, db: Database, site_id: str, model: SiteModel) -> None:
        self.db, self.site_id, self.round = db, site_id, 0
        layers = model.layers
        self.zone = next(
            f["id"] for f in layers["zones"] if f["properties"]["kind"] == "muster_point"
        )
        self.resource = layers["resources"][len(layers["resources"]) // 2]["id"]
        self.person = layers["people"][len(layers["people"]) // 2]["id"]
        self.edge = layers["network"][len(layers["network"]) // 2]["id"]

    def patch(self, layer: str, fid: str, data: dict[str, Any]) -> None:
        version = get_feature(self.db, self.site_id, layer, fid).version
        replace_feature(
            self.db, self.site_id, layer, fid, data, actor="bench", if_match=version, partial=True
        )

    def zone_capacity(self) -> None:
        self.round += 1
        self.patch("zones", self.zone, {"properties": {"capacity": 100 + self.round}})

    def resource_status(self) -> None:
        self.round += 1
        status = "available" if self.round % 2 else "out_of_service"
        self.patch("resources", self.resource, {"properties": {"status": status}})

    def person_role(self) -> None:
        self.round += 1
        self.patch("people", self.person, {"properties": {"role": f"operator {self.round}"}})

    def edge_width(self) -> None:
        self.round += 1
        self.patch("network", self.edge, {"properties": {"width_m": 2.0 + self.round / 10}})

    def edge_geometry(self) -> None:
        self.round += 1
        line = get_feature(self.db, self.site_id, "network", self.edge).geometry
        assert line is not None
        coords = [list(c) for c in line.coords]
        coords[-1][0] += 1e-5 if self.round % 2 else -1e-5  # about a metre east or back
        geometry = {"type": "LineString", "coordinates": coords}
        self.patch("network", self.edge, {"geometry": geometry})


def same_model(a: SiteModel, b: SiteModel) -> list[str]:
    """Where two models of the same layer state differ (empty: nowhere)."""
    faults = []
    if a.layers != b.layers:
        faults.append("layers")
    if a.graphs.keys() != b.graphs.keys():
        faults.append("graph modes")
    for mode in a.graphs.keys() & b.graphs.keys():
        ga, gb = a.graphs[mode], b.graphs[mode]
        for name in ("node_lonlat", "edge_src", "edge_dst", "edge_feature", "edge_time_s"):
            if not np.array_equal(getattr(ga, name), getattr(gb, name)):
                faults.append(f"{mode} graph {name}")
    if a.person_ids != b.person_ids or not np.array_equal(a.person_lonlat, b.person_lonlat):
        faults.append("people")
    ma, mb = a.musters, b.musters
    if (
        list(ma.ids) != list(mb.ids)
        or not np.array_equal(ma.lonlat, mb.lonlat)
        or list(ma.capacity) != list(mb.capacity)
    ):
        faults.append("musters")
    if a.sensors != b.sensors:
        faults.append("sensors")
    return faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    parser.add_argument("--check", action="store_true", help="compare with a full build")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    source = loaded_database(args.edges, args.people, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rallypoint.db"
        shutil.copyfile(source, path)
        engine = make_engine(f"sqlite:///{path}")
        db = Database(engine)
        site_id = f"synthetic-{args.edges}"
        full = [timed(lambda: build_site_model(db, site_id))[0] for _ in range(args.repeat)]
        full_ms = statistics.median(full)
        print(f"synthetic site {site_id}, {args.people} people; median of {args.repeat}")
        print(f"  full build                      {full_ms:8.0f} ms")
        models = SiteModels(db)
        model = models.get(site_id)
        editor = Editor(db, site_id, model)
        edits = {
            "zone capacity": editor.zone_capacity,
            "resource status": editor.resource_status,
            "person role": editor.person_role,
            "network edge width": editor.edge_width,
            "network edge geometry": editor.edge_geometry,
        }
        for name, edit in edits.items():
            samples = []
            for _ in range(args.repeat):
                edit()
                ms, rebuilt = timed(lambda: models.get(site_id))
                assert rebuilt is not model, "the edit did not change the model"
                model = rebuilt
                samples.append(ms)
            ms = statistics.median(samples)
            print(f"  one edit: {name:22s}{ms:8.0f} ms   full build / this: {full_ms / ms:5.1f}x")
        if args.check:
            faults = same_model(model, build_site_model(db, site_id))
            print("  check against a full build: " + ("same" if not faults else str(faults)))
        engine.dispose()


if __name__ == "__main__":
    main()
