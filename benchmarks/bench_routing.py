"""Routing benchmarks: graph build, evacuation routes, nearest resources, capacity-aware plan.

Run: ``.venv/bin/python -m benchmarks.bench_routing [--edges 100000] [--people 5000]
[--postgis-url URL]``. Prints the figures recorded in docs/benchmarks.md. Peers measured in the
same run: plain networkx doing the routing search (a Dijkstra from all muster points with its
predecessor tree), and, with ``--postgis-url`` (a database with pgRouting), ``pgr_dijkstraCost``
over the same edges.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from shapely.geometry import Point, shape

from gis.crs import SiteCRS
from gis.hazards.zones import ThreatZone
from gis.site_bundle import read_bundle, write_bundle
from gis.sitegen import generate_site
from routing.capacity import site_capacity_plan
from routing.evacuation import MusterPoints, evacuation_routes
from routing.forest import reverse_search
from routing.graph import Mode, NetworkGraph, graph_from_features
from routing.resources import ResourceIndex, Resources
from routing.snapping import Snapped, arrival_legs, snap


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in milliseconds, and the last result."""
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), result


def load_site(edges: int | None, people: int, cache: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if edges is None:
        return generate_site()
    folder = cache / f"synthetic-{edges}-{people}"
    if not (folder / "site.json").is_file():
        site, layers = generate_site(people=people, edges=edges, site_id=f"synthetic-{edges}")
        write_bundle(folder, site, layers)
    return read_bundle(folder)


def scenario(site: dict[str, Any], layers: dict[str, Any]) -> dict[str, Any]:
    centre = shape(site["boundary"]).centroid
    crs = SiteCRS.for_site(centre.x, centre.y)
    zones = layers["zones"]["features"]
    musters = [z for z in zones if z["properties"]["kind"] == "muster_point"]
    people = layers["people"]["features"]
    # A release a third of the way across the site: a 150 m inner zone, 400 m and 800 m outer.
    x0, y0, x1, y1 = shape(site["boundary"]).bounds
    source = crs.to_metric(Point(x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 2))
    threat = [
        ThreatZone(level, crs.to_wgs84(source.buffer(radius)))
        for level, radius in ((3, 150.0), (2, 400.0), (1, 800.0))
    ]
    return {
        "crs": crs,
        "muster": MusterPoints(
            [m["id"] for m in musters],
            np.array([shape(m["geometry"]).centroid.coords[0] for m in musters]),
            [m["properties"]["capacity"] for m in musters],
        ),
        "people_ids": [p["id"] for p in people],
        "people_xy": np.array([p["geometry"]["coordinates"] for p in people]),
        "zones": threat,
        "incident": crs.to_wgs84(source).coords[0],
    }


def networkx_peer(graph: NetworkGraph, s: dict[str, Any]) -> Callable[[], Any]:
    """Plain networkx doing the search behind the routes (no snapping, no hazard costs)."""
    reverse = graph.graph.reverse(copy=True)
    attached = snap(graph, s["muster"].lonlat)
    start, end, from_start, from_end = arrival_legs(graph, attached, graph.edge_time_s)
    for node, leg in (*zip(start, from_start, strict=True), *zip(end, from_end, strict=True)):
        if np.isfinite(leg):
            reverse.add_edge("S", int(node), time=float(leg))

    def run() -> Any:
        return nx.dijkstra_predecessor_and_distance(reverse, "S", weight="time")

    return run


def pgrouting_peer(graph: NetworkGraph, url: str, repeat: int) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    forward = graph.feature_edges[:, 0]
    backward = graph.feature_edges[:, 1]
    rows = io.StringIO()
    for f, (e, b) in enumerate(zip(forward, backward, strict=True)):
        back = graph.edge_time_s[b] if b >= 0 else -1
        rows.write(
            f"{f}\t{graph.edge_src[e]}\t{graph.edge_dst[e]}\t{graph.edge_time_s[e]}\t{back}\n"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgrouting")
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_edges")
        conn.exec_driver_sql(
            "CREATE TABLE bench_edges (id int, source int, target int, cost float8, "
            "reverse_cost float8)"
        )
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy("COPY bench_edges FROM STDIN") as copy:  # type: ignore[union-attr]
            copy.write(rows.getvalue())
    rng = np.random.default_rng(42)
    source = 0
    targets = rng.choice(graph.node_count, size=1000, replace=False)
    query = sa.text(
        "SELECT end_vid, agg_cost FROM pgr_dijkstraCost("
        "'SELECT id, source, target, cost, reverse_cost FROM bench_edges', "
        ":source, CAST(:targets AS bigint[]), directed => true)"
    )
    with engine.connect() as conn:
        pg_ms, result = timed(
            lambda: conn.execute(query, {"source": source, "targets": targets.tolist()}).all(),
            repeat,
        )
    pg = {int(v): float(c) for v, c in result}
    # Ours: forward costs from `source` are reverse costs to it on this symmetric foot graph.
    ours_ms, forest = timed(
        lambda: reverse_search(graph, graph.edge_time_s, [(source, 0.0)]), repeat
    )
    worst = max(abs(forest.distance[t] - pg[int(t)]) for t in targets if int(t) in pg)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bench_edges")
    engine.dispose()
    return (
        f"pgRouting pgr_dijkstraCost 1->1000: {pg_ms:8.1f} ms   ours 1->all: {ours_ms:6.1f} ms   "
        f"ratio {pg_ms / ours_ms:5.1f}x   max |distance difference| {worst:.2e} s"
    )


def run(name: str, site: dict[str, Any], layers: dict[str, Any], args: argparse.Namespace) -> None:
    s = scenario(site, layers)
    network = layers["network"]["features"]
    print(
        f"== {name}: {len(network)} edges, {len(s['people_ids'])} people, "
        f"{len(layers['resources']['features'])} resources"
    )

    foot_ms, foot = timed(lambda: graph_from_features(network, crs=s["crs"], mode="foot"), 1)
    vehicle_ms, vehicle = timed(
        lambda: graph_from_features(network, crs=s["crs"], mode="vehicle"), 1
    )
    graphs: dict[Mode, NetworkGraph] = {"foot": foot, "vehicle": vehicle}
    model_ms, _ = timed(lambda: foot.graph, 1)
    tracemalloc.start()
    graph_from_features(network, crs=s["crs"], mode="foot")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"graph build from the layer: foot {foot_ms:8.1f} ms, vehicle {vehicle_ms:8.1f} ms "
        f"(peak memory {peak / 2**20:.0f} MiB for foot); networkx model on first use "
        f"{model_ms:8.1f} ms"
    )

    snap_ms, people = timed(lambda: snap(foot, s["people_xy"]), args.repeat)
    print(
        f"attaching everyone's position to the network: {snap_ms:8.1f} ms "
        "(done as positions arrive, not per routing)"
    )
    routes_ms, routes = timed(
        lambda: evacuation_routes(
            foot,
            s["people_ids"],
            s["people_xy"],
            s["muster"],
            zones=s["zones"],
            snapped_people=people,
        ),
        args.repeat,
    )
    peer_ms, _ = timed(networkx_peer(foot, s), max(1, args.repeat // 3))
    print(
        f"evacuation routes, everyone, with threat zones: {routes_ms:8.1f} ms   "
        f"plain networkx search alone: {peer_ms:8.1f} ms   ratio {peer_ms / routes_ms:5.1f}x   "
        f"trapped {len(routes.trapped)}"
    )
    print(person_updates(foot, s, routes, routes_ms))

    features = layers["resources"]["features"]
    resources = Resources(
        [r["id"] for r in features],
        [r["properties"]["kind"] for r in features],
        np.array([r["geometry"]["coordinates"] for r in features]),
        [r["properties"].get("status", "available") for r in features],
    )
    index_ms, index = timed(lambda: ResourceIndex(graphs, resources), 1)
    kinds = sorted(set(resources.kinds))[:10]
    nearest_ms, nearest = timed(lambda: index.nearest(s["incident"], k=5, kinds=kinds), args.repeat)
    found = sum(len(v) for v in nearest.values())
    print(
        f"nearest resources, k=5 of {len(kinds)} kinds: {nearest_ms:8.1f} ms "
        f"({found} found; attaching all resources once: {index_ms:.0f} ms)"
    )

    plan_ms, plan = timed(
        lambda: site_capacity_plan(foot, routes, s["muster"].capacity, zones=s["zones"]), 1
    )
    print(
        f"capacity-aware plan: {plan_ms:8.1f} ms   egress {plan.egress_s:.0f} s   "
        f"capacity-free lower bound {plan.lower_bound_s:.0f} s   "
        f"CCRP iterations {plan.plan.iterations} ({plan.plan.searches} searched)   "
        f"unplaced {plan.plan.unplaced}"
    )
    if args.postgis_url and name != "demo site":
        print(pgrouting_peer(foot, args.postgis_url, max(1, args.repeat // 3)))


def person_updates(
    graph: NetworkGraph, s: dict[str, Any], routes: Any, whole_ms: float, moves: int = 2000
) -> str:
    """Routes again for people who moved, one person per update, read from the incident's kept
    search (``EvacuationRoutes.with_people``), against a whole ``evacuation_routes`` run."""
    search = routes.search
    start = time.perf_counter()
    search.prepare_updates()  # once per incident: the whole-forest tables
    prepare_ms = (time.perf_counter() - start) * 1000
    rng = np.random.default_rng(42)
    count = len(s["people_ids"])
    who = rng.integers(count, size=moves)
    # A walk of about 10 m from where each person stood (1e-4 degrees is about 10 m).
    xy = s["people_xy"][who] + rng.normal(0.0, 1e-4, size=(moves, 2))
    attached = snap(graph, xy)
    samples: dict[str, list[float]] = {"attached": [], "snapped here": []}
    for k in range(moves):
        one = Snapped(
            attached.feature[k : k + 1], attached.t[k : k + 1], attached.distance_m[k : k + 1]
        )
        for kind, given in (("attached", one), ("snapped here", None)):
            begin = time.perf_counter()
            routes.with_people([int(who[k])], xy[k : k + 1], given)
            samples[kind].append((time.perf_counter() - begin) * 1000)
    everyone = s["people_xy"] + rng.normal(0.0, 1e-4, size=(count, 2))
    everyone_attached = snap(graph, everyone)
    batch_ms, _ = timed(
        lambda: routes.with_people(np.arange(count), everyone, everyone_attached), 5
    )
    median = statistics.median(samples["attached"])
    p99 = float(np.percentile(samples["attached"], 99))
    return (
        f"one moved person routed again (position attached as it arrived): median "
        f"{median:.3f} ms, p99 {p99:.3f} ms ({1000 / median:,.0f} a second one by one); "
        f"attaching it too: median {statistics.median(samples['snapped here']):.3f} ms; "
        f"a whole run {whole_ms:.1f} ms, ratio {whole_ms / median:.0f}x; all {count} moved "
        f"at once: {batch_ms:.1f} ms; tables built once per incident: {prepare_ms:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    parser.add_argument("--postgis-url", default=None, help="a PostGIS database with pgRouting")
    args = parser.parse_args()
    site, layers = load_site(None, 0, args.cache)
    run("demo site", site, layers, args)
    site, layers = load_site(args.edges, args.people, args.cache)
    run(f"synthetic site ({args.edges} edges requested)", site, layers, args)


if __name__ == "__main__":
    main()
