// The people who must move, drawn on one canvas: thousands of dots move four times a second,
// and one SVG element per dot costs a style recalculation and a paint each (benchmarks/
// bench_wall.py: p95 ~340 ms a message at 5,000 people). Here a message only updates two
// typed arrays, and at most once a frame the canvas is painted: by the people worker
// (people-worker.js, on an OffscreenCanvas, off the main thread), or on the page where a
// browser has no OffscreenCanvas (the same Painter, people-paint.js). Trapped people are not
// drawn here: they are few, and are SVG markers with labels (map.js). A click or a hover finds
// the nearest dot within a few pixels, projected as the painter projects them.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { Painter, projectX, projectY } from "./people-paint.js";

const HIT_PX = 9; // a click or hover this close to a dot is about its person

export class PeopleLayer extends L.Layer {
  constructor(options = {}) {
    super();
    L.setOptions(this, options); // its own options (pane): never the prototype's shared ones
    this.ids = [];
    this.incident = []; // per row: the incident whose picture routes this person
    this.row = new Map(); // person id -> row
    this.lon = new Float64Array(0);
    this.lat = new Float64Array(0);
    this.state = new Uint8Array(0); // 0: to move, 1: arrived (people-paint.js STYLES)
    this.frame = 0;
    this.busy = false; // a paint is with the worker: the next waits for its answer
    this.again = false;
  }

  onAdd(map) {
    this.canvas = L.DomUtil.create("canvas", "rp-people leaflet-zoom-hide");
    this.canvas.setAttribute("aria-hidden", "true");
    this.getPane().append(this.canvas);
    const ratio = window.devicePixelRatio || 1;
    if (typeof this.canvas.transferControlToOffscreen === "function" && typeof Worker === "function") {
      const offscreen = this.canvas.transferControlToOffscreen();
      this.worker = new Worker(new URL("./people-worker.js", import.meta.url), { type: "module" });
      this.worker.addEventListener("message", (event) => this.painted(event.data));
      this.worker.postMessage({ type: "init", canvas: offscreen, ratio }, [offscreen]);
      this.canvas.dataset.painter = "worker";
    } else {
      this.painter = new Painter(this.canvas, ratio);
      this.canvas.dataset.painter = "page";
    }
    map.on("moveend zoomend resize viewreset", this.reset, this);
    this.reset();
  }

  onRemove(map) {
    map.off("moveend zoomend resize viewreset", this.reset, this);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.worker?.terminate();
    this.worker = null;
    this.canvas.remove();
  }

  // Who is drawn: `people` is [{id, incident, lonlat, arrived}] for everyone who must move and
  // has a route (the trapped are drawn apart).
  setPeople(people) {
    const n = people.length;
    this.ids = new Array(n);
    this.incident = new Array(n);
    this.row = new Map();
    this.lon = new Float64Array(n);
    this.lat = new Float64Array(n);
    this.state = new Uint8Array(n);
    people.forEach((p, i) => {
      this.ids[i] = p.id;
      this.incident[i] = p.incident;
      this.row.set(p.id, i);
      this.lon[i] = p.lonlat[0];
      this.lat[i] = p.lonlat[1];
      this.state[i] = p.arrived ? 1 : 0;
    });
    this.schedule();
  }

  // A positions message in the compact form: ids, and their coordinates as lon, lat, lon, ...
  // Only the arrays change; the painting waits for the next frame.
  moveFlat(ids, lonlat) {
    const row = this.row;
    for (let j = 0; j < ids.length; j += 1) {
      const i = row.get(ids[j]);
      if (i === undefined) continue;
      this.lon[i] = lonlat[2 * j];
      this.lat[i] = lonlat[2 * j + 1];
    }
    this.schedule();
  }

  setArrived(id, arrived) {
    const i = this.row.get(id);
    if (i === undefined) return;
    this.state[i] = arrived ? 1 : 0;
    this.schedule();
  }

  schedule() {
    if (!this.frame && this._map) this.frame = requestAnimationFrame(() => this.draw());
  }

  // The view: its zoom, the pixel of its top-left corner (spherical Mercator at that zoom, as
  // Leaflet projects) and its size in CSS pixels.
  // For painting, the corner is where the canvas lies (placed at the last reset: during a drag
  // the canvas moves with the map pane); for finding a dot under the pointer, the view's.
  view(atCanvas = true) {
    const map = this._map;
    const zoom = map.getZoom();
    const size = map.getSize();
    if (atCanvas && this.placed) {
      const origin = map.getPixelOrigin();
      return { zoom, ox: origin.x + this.placed.x, oy: origin.y + this.placed.y, width: size.x, height: size.y };
    }
    const corner = map.project(map.containerPointToLatLng([0, 0]), zoom);
    return { zoom, ox: corner.x, oy: corner.y, width: size.x, height: size.y };
  }

  // The canvas covers the map's view: placed where the view's top-left corner is in the pane.
  reset() {
    const map = this._map;
    if (!map) return;
    const size = map.getSize();
    this.placed = map.containerPointToLayerPoint([0, 0]);
    L.DomUtil.setPosition(this.canvas, this.placed);
    this.canvas.style.width = `${size.x}px`;
    this.canvas.style.height = `${size.y}px`;
    if (this.worker) this.worker.postMessage({ type: "size", width: size.x, height: size.y });
    else this.painter.resize(size.x, size.y);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.draw();
  }

  draw() {
    this.frame = 0;
    if (!this._map) return;
    const view = this.view();
    if (!this.worker) {
      this.painted({ ...this.painter.paint(view, this.lon, this.lat, this.state), people: this.lon.length });
      return;
    }
    if (this.busy) {
      this.again = true; // painted once the worker has finished the one it has
      return;
    }
    this.busy = true;
    // Copies of the arrays go (80 kB for 5,000 people): the page keeps its own.
    this.worker.postMessage({ type: "paint", view, lon: this.lon, lat: this.lat, state: this.state });
  }

  // What was painted, on the canvas element for tests and the curious: counts only.
  painted(done) {
    const data = this.canvas.dataset;
    data.people = String(done.people);
    data.drawn = String(done.painted);
    data.arrived = String(done.arrived);
    data.draws = String(done.paints);
    if (!this.worker) return;
    this.busy = false;
    if (this.again) {
      this.again = false;
      this.schedule();
    }
  }

  // The person whose dot is nearest to a point of the map's container, within HIT_PX.
  nearest(point) {
    if (!this._map || !this.lon.length) return null;
    const view = this.view(false);
    let best = -1;
    let bestD = HIT_PX * HIT_PX;
    for (let i = 0; i < this.lon.length; i += 1) {
      const dx = projectX(view, this.lon[i]) - point.x;
      if (dx > HIT_PX || dx < -HIT_PX) continue;
      const dy = projectY(view, this.lat[i]) - point.y;
      const d = dx * dx + dy * dy;
      if (d <= bestD) {
        bestD = d;
        best = i;
      }
    }
    return best < 0 ? null : { id: this.ids[best], incident: this.incident[best], lonlat: [this.lon[best], this.lat[best]] };
  }
}
