// Builds the phone app's service worker with Workbox (workbox-build, from npm; its runtime is
// inlined into the worker, so nothing loads from a CDN): `node frontend/phone-build.mjs`, run by
// `make frontend`. Writes frontend/build/phone-sw.js, served at /phone/sw.js (command/routes/phone.py).
//
// What the worker does (docs/offline.md, "The responder's phone"):
// - precaches the app shell: the page (/phone/), its modules, styles, manifest and icons, and
//   Leaflet (the ES module build, its CSS and images), each with its revision;
// - answers every GET under /api/ network first (a 5xx counts as no network), falling back to
//   the last answer it kept. A kept answer carries the header Rallypoint-Cached-At (when it was
//   kept), so the page can say "offline, as of HH:MM"; one straight from the network has none.
// Writes (POST, PUT) are never answered from a cache: the page queues them (phone-queue.js).
import { rename, unlink } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generateSW } from "workbox-build";

const here = path.dirname(fileURLToPath(import.meta.url));
const dest = path.join(here, "build", "phone-sw.js");
const partial = path.join(here, "build", `phone-sw.${process.pid}.tmp.js`);

const LEAFLET = "node_modules/leaflet/dist/";

// Where each file of frontend/ is served (command/routes/wall.py, command/routes/phone.py).
function servedAt(file) {
  if (file === "phone.html") return "/phone/";
  if (file === "phone.webmanifest") return "/phone/manifest.webmanifest";
  if (file.startsWith(LEAFLET)) return `/vendor/leaflet/${file.slice(LEAFLET.length)}`;
  return `/static/${file}`;
}

const { count, size, warnings } = await generateSW({
  globDirectory: here,
  globPatterns: [
    "phone.html",
    "phone.css",
    "phone*.js",
    "page.js",
    "phone.webmanifest",
    "phone-icon-*.png",
    `${LEAFLET}leaflet-src.esm.js`,
    `${LEAFLET}leaflet.css`,
    `${LEAFLET}images/*.png`,
  ],
  globIgnores: ["build/**"], // Leaflet is under node_modules, which Workbox skips by default
  manifestTransforms: [
    async (entries) => ({ manifest: entries.map((entry) => ({ ...entry, url: servedAt(entry.url) })), warnings: [] }),
  ],
  maximumFileSizeToCacheInBytes: 4 * 1024 * 1024,
  swDest: partial,
  cacheId: "rallypoint-phone",
  inlineWorkboxRuntime: true,
  mode: "production",
  sourcemap: false,
  skipWaiting: true,
  clientsClaim: true,
  cleanupOutdatedCaches: true,
  navigateFallback: "/phone/",
  navigateFallbackAllowlist: [/^\/phone\/?$/],
  runtimeCaching: [
    {
      urlPattern: ({ url, sameOrigin }) => sameOrigin && url.pathname.startsWith("/api/") && !url.pathname.startsWith("/api/auth/"),
      method: "GET",
      handler: "NetworkFirst",
      options: {
        cacheName: "rallypoint-phone-api",
        networkTimeoutSeconds: 10,
        expiration: { maxEntries: 400, maxAgeSeconds: 7 * 24 * 3600 },
        plugins: [
          {
            // A server that answers but cannot serve (502 from the front while the app
            // restarts, 503) is no better than no network: the kept copy is shown instead.
            fetchDidSucceed: async ({ response }) => {
              if (response.status >= 500) throw new Error(`the server answered ${response.status}`);
              return response;
            },
            // Keep only whole answers, stamped with the time they were kept.
            cacheWillUpdate: async ({ response }) => {
              if (!response || response.status !== 200) return null;
              const headers = new Headers(response.headers);
              headers.set("Rallypoint-Cached-At", new Date().toISOString());
              const body = await response.blob();
              return new Response(body, { status: response.status, statusText: response.statusText, headers });
            },
          },
        ],
      },
    },
  ],
});
if (warnings.length) {
  for (const warning of warnings) console.error(warning);
  await unlink(partial).catch(() => {});
  process.exit(1); // a file of the shell missing: no worker that would break the app offline
}
await rename(partial, dest);
console.log(`frontend/build/phone-sw.js: ${count} files precached, ${(size / 1024).toFixed(0)} KiB`);
