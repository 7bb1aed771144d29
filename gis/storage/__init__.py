"""Storage: one set of SQLAlchemy models for SQLite (embedded default) and PostGIS."""
