// Painting the people's dots (people.js), in the people worker (people-worker.js) or, where a
// browser has no OffscreenCanvas, on the page itself. No DOM and no Leaflet here: a worker has
// neither. Each dot's pixels are pre-rendered once per style; a paint copies them row by row
// into one ImageData and puts the box they cover: 5,000 drawImage calls cost ~45 ms a frame on
// a wall without a GPU, the copies a few milliseconds.

// By state: to move (filled black, white ring), arrived (hollow, green ring); at three sizes,
// by zoom: zoomed out on a plume, a site of hundreds of people must not become one black blob.
export const STYLES = [
  { name: "moving", radius: 6, fill: "#111111", stroke: "#ffffff", width: 2 },
  { name: "arrived", radius: 5, fill: "#ffffff", stroke: "#1a7f37", width: 3 },
];
const SIZES = [
  { upTo: 14, scale: 0.5 },
  { upTo: 16, scale: 0.75 },
  { upTo: Infinity, scale: 1 },
];
export const MARGIN_PX = 12; // dots this far outside the view are still painted (their ring shows)

function scratch(size) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(size, size);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  return canvas;
}

// A dot's pixels (device pixels, RGBA as one 32-bit word each), and per row the span
// [from, to) that is painted at all.
function sprite(style, ratio) {
  const size = Math.ceil((style.radius + style.width) * 2 * ratio) + 2;
  const ctx = scratch(size).getContext("2d");
  ctx.scale(ratio, ratio);
  const c = size / ratio / 2;
  ctx.beginPath();
  ctx.arc(c, c, style.radius, 0, 2 * Math.PI);
  ctx.fillStyle = style.fill;
  ctx.fill();
  ctx.lineWidth = style.width;
  ctx.strokeStyle = style.stroke;
  ctx.stroke();
  const pixels = new Uint32Array(ctx.getImageData(0, 0, size, size).data.buffer.slice(0));
  const spans = new Int32Array(2 * size);
  for (let row = 0; row < size; row += 1) {
    let from = size;
    let to = 0;
    for (let col = 0; col < size; col += 1) {
      if (pixels[row * size + col] >>> 24) {
        from = Math.min(from, col);
        to = col + 1;
      }
    }
    spans[2 * row] = from;
    spans[2 * row + 1] = Math.max(from, to);
  }
  return { pixels, spans, size, half: size / 2 };
}

// Where a point lies in the view, in CSS pixels from its top-left corner: spherical Mercator
// (EPSG:3857, Leaflet's CRS) at the view's zoom, less the pixel of that corner (view.ox, oy).
// pixel = 256 * 2^zoom * (lon/360 + 1/2, 1/2 - ln(tan(pi/4 + lat/2)) / 2pi).
export function projectX(view, lon) {
  return 256 * 2 ** view.zoom * (lon / 360 + 0.5) - view.ox;
}

export function projectY(view, lat) {
  return 256 * 2 ** view.zoom * (0.5 - Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 360)) / (2 * Math.PI)) - view.oy;
}

export class Painter {
  constructor(canvas, ratio) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.ratio = ratio;
    // Per size (SIZES), per state (STYLES).
    this.sizes = SIZES.map(({ scale }) =>
      STYLES.map((style) => sprite({ ...style, radius: style.radius * scale, width: Math.max(1, style.width * scale) }, ratio)));
    this.image = null;
    this.dirty = [0, 0, 0, 0];
    this.paints = 0;
  }

  // The view's size in CSS pixels (setting a canvas's size clears it).
  resize(width, height) {
    this.canvas.width = Math.max(1, Math.round(width * this.ratio));
    this.canvas.height = Math.max(1, Math.round(height * this.ratio));
    this.image = null;
  }

  // Every dot in `view` ({zoom, ox, oy, width, height}); how many were painted, and arrived.
  paint(view, lon, lat, state) {
    const { ctx, ratio, canvas } = this;
    const sprites = this.sizes[SIZES.findIndex((size) => view.zoom <= size.upTo)];
    const w = canvas.width;
    const h = canvas.height;
    if (!this.image || this.image.width !== w || this.image.height !== h) {
      this.image = ctx.createImageData(w, h);
      this.pixels = new Uint32Array(this.image.data.buffer);
      this.dirty = [0, 0, w, h];
    }
    const out = this.pixels;
    // Only the box the dots covered last time is cleared, and only the union of that box and
    // this time's is put: the people are on a site, a small part of a map framed on a plume.
    const [dx0, dy0, dx1, dy1] = this.dirty;
    for (let row = dy0; row < dy1; row += 1) out.fill(0, row * w + dx0, row * w + dx1);
    const scale = 256 * 2 ** view.zoom;
    const k = Math.PI / 360;
    const twoPi = 2 * Math.PI;
    const { ox, oy } = view;
    const width = w / ratio;
    const height = h / ratio;
    let painted = 0;
    let arrived = 0;
    let bx0 = w;
    let by0 = h;
    let bx1 = 0;
    let by1 = 0;
    for (let i = 0; i < lon.length; i += 1) {
      const px = scale * (lon[i] / 360 + 0.5) - ox;
      const py = scale * (0.5 - Math.log(Math.tan(Math.PI / 4 + lat[i] * k)) / twoPi) - oy;
      if (!(px >= -MARGIN_PX && py >= -MARGIN_PX && px <= width + MARGIN_PX && py <= height + MARGIN_PX)) continue;
      painted += 1;
      arrived += state[i];
      // The dot's painted span, row by row; a later dot lies on top of an earlier one.
      const s = sprites[state[i]];
      const size = s.size;
      const left = Math.round(px * ratio - s.half);
      const top = Math.round(py * ratio - s.half);
      for (let sy = Math.max(0, -top), sy1 = Math.min(size, h - top); sy < sy1; sy += 1) {
        const a = Math.max(s.spans[2 * sy], -left);
        const b = Math.min(s.spans[2 * sy + 1], w - left);
        if (a < b) out.set(s.pixels.subarray(sy * size + a, sy * size + b), (top + sy) * w + left + a);
      }
      if (left < bx0) bx0 = left;
      if (top < by0) by0 = top;
      if (left + size > bx1) bx1 = left + size;
      if (top + size > by1) by1 = top + size;
    }
    const now = [Math.max(0, bx0), Math.max(0, by0), Math.min(w, bx1), Math.min(h, by1)];
    const had = dx0 < dx1 && dy0 < dy1;
    const has = now[0] < now[2] && now[1] < now[3];
    if (had || has) {
      const x0 = Math.min(had ? dx0 : w, has ? now[0] : w);
      const y0 = Math.min(had ? dy0 : h, has ? now[1] : h);
      const x1 = Math.max(had ? dx1 : 0, has ? now[2] : 0);
      const y1 = Math.max(had ? dy1 : 0, has ? now[3] : 0);
      ctx.putImageData(this.image, 0, 0, x0, y0, x1 - x0, y1 - y0);
    }
    this.dirty = has ? now : [0, 0, 0, 0];
    this.paints += 1;
    return { painted, arrived, paints: this.paints };
  }
}
