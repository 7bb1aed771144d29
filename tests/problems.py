"""The one helper that checks the problem+json shape (RFC 9457) on every error path."""

from __future__ import annotations

from typing import Any

import httpx


def assert_problem(
    response: httpx.Response, status: int, *, field: str | None = None, row: int | None = None
) -> dict[str, Any]:
    """Assert an RFC 9457 problem with ``status``; if given, that an error names ``field``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    for error in body.get("errors", []):
        assert set(error) <= {"field", "reason", "row"}
        assert error["field"] and error["reason"]
    if field is not None:
        named = [e for e in body.get("errors", []) if e["field"] == field]
        assert named, f"no error names field {field!r}: {body}"
        if row is not None:
            assert any(e.get("row") == row for e in named), f"no error for row {row}: {body}"
    return body
