"""Hazard impact models: threat zones for toxic release, fire and explosion."""
