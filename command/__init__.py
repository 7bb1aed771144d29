"""Incident command: the HTTP API and the CLI (activation, live state and the hub come later)."""
