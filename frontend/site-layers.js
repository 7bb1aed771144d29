// The site's layers kept current on the wall: a `layer.changed` event (a planner's edit, an
// import, an edit made in PostGIS directly) or the planner's own save in the editor changes the
// features the wall holds (zones, sensors, resources, the network and the surroundings) and
// draws them again, without a reload.
// An older version never replaces a newer one, so the event of a save the editor has applied
// already changes nothing. Wall methods, mixed into it by state.js.
import { api } from "./api.js";

const REDRAW_MS = 100; // a burst of changes (an import) is drawn once

export const siteLayerMethods = {
  // The features of `layer` the wall holds, by id (null: a layer the wall does not draw).
  featureStore(layer) {
    if (layer === "zones") return this.zonesById;
    if (layer === "sensors") return this.sensors;
    if (layer === "resources") return this.resourcesById;
    if (layer === "network") return this.networkById;
    if (layer === "basemap") return this.basemapById;
    if (layer === "receptors") return this.receptorsById;
    return null; // people: the positions messages move them
  },

  // `layer.changed` (docs/protocol.md): {layer, changes: [{id, action, version, actor, at,
  // feature, fields}], reload}. `reload` says the changes are too many to list: the layer is
  // read again. The editor, when open, hears it too (a feature being edited may be stale now).
  layerChanged(data) {
    if (!data?.layer || this.closed) return;
    if (data.reload) this.reloadLayer(data.layer);
    else {
      for (const change of data.changes || []) {
        if (change.action === "delete") this.featureChanged(data.layer, change.id, null);
        else if (change.feature) this.featureChanged(data.layer, change.id, change.feature);
        else this.refetchFeature(data.layer, change.id);
      }
    }
    this.editor?.layerChanged(data);
  },

  // One feature is now `feature` (null: deleted). False when the wall does not hold the layer
  // or holds a newer version already.
  featureChanged(layer, id, feature) {
    const store = this.featureStore(layer);
    if (!store) return false;
    const key = String(id);
    const held = store.get(key);
    const version = (f) => f?.properties?.version ?? 0;
    if (feature && held && version(held) > version(feature)) return false;
    if (feature) store.set(key, feature);
    else store.delete(key);
    this.redrawSoon(layer);
    return true;
  },

  async refetchFeature(layer, id) {
    const site = encodeURIComponent(this.site.id);
    try {
      const feature = await api(`/api/sites/${site}/layers/${layer}/features/${encodeURIComponent(id)}`);
      if (!this.closed) this.featureChanged(layer, id, feature);
    } catch (error) {
      if (error.status === 404 && !this.closed) this.featureChanged(layer, id, null);
    }
  },

  async reloadLayer(layer) {
    const store = this.featureStore(layer);
    if (!store) return;
    let collection;
    try {
      // The surroundings as at loading: within SURROUNDINGS_M of the site (map.js).
      collection = await this.layer(layer, layer === "basemap" ? `?bbox=${this.surroundings()}` : "");
    } catch (error) {
      if (error.status !== 401) console.warn(`layer ${layer} not read again`, error);
      return;
    }
    if (this.closed) return;
    store.clear();
    for (const f of collection.features) store.set(String(f.id), f);
    this.redrawSoon(layer);
  },

  redrawSoon(layer) {
    this.redrawTimers ||= new Map();
    if (this.redrawTimers.has(layer)) return;
    this.redrawTimers.set(layer, setTimeout(() => {
      this.redrawTimers.delete(layer);
      if (this.closed) return;
      if (layer === "zones") this.drawZones();
      if (layer === "sensors") this.drawSensors();
      if (layer === "network") this.drawNetwork();
      const all = (store) => ({ type: "FeatureCollection", features: [...store.values()] });
      if (layer === "basemap") this.drawBasemap(all(this.basemapById), this.basemapNamed);
      if (layer === "receptors") this.drawReceptors(all(this.receptorsById));
      // Resources are drawn by the incidents that need them (their nearest), from the store.
    }, REDRAW_MS));
  },
};
