// The people worker: paints the people's dots on the canvas the page handed over
// (OffscreenCanvas), off the page's main thread, so that a wall with thousands of people moving
// spends its main thread on the messages only (people.js). Each "paint" is answered with
// what was painted.
import { Painter } from "./people-paint.js";

let painter = null;

self.addEventListener("message", (event) => {
  const message = event.data;
  if (message.type === "init") {
    painter = new Painter(message.canvas, message.ratio);
  } else if (message.type === "size") {
    painter.resize(message.width, message.height);
  } else if (message.type === "paint") {
    const done = painter.paint(message.view, message.lon, message.lat, message.state);
    self.postMessage({ type: "painted", ...done, people: message.lon.length });
  }
});
