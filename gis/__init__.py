"""Spatial model of a site: layers, storage, geometry validation and site CRS helpers."""
