"""Dependencies shared by the routers (``Annotated`` aliases, as in FastAPI's template)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from gis.errors import FieldError, InvalidInput
from gis.storage.db import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_actor(
    x_rallypoint_actor: Annotated[
        str | None,
        Header(
            description="Who makes the change (until authentication arrives, the caller says).",
            max_length=200,
        ),
    ] = None,
) -> str:
    return (x_rallypoint_actor or "anonymous").strip() or "anonymous"


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: "3"`` (or ``W/"3"``) names version 3; ``*`` or nothing names none."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) < 1:
        raise InvalidInput(
            'If-Match must be the ETag of the feature, such as "3"',
            errors=[FieldError("If-Match", 'an ETag such as "3"')],
        )
    return int(text)


def get_if_match(
    if_match: Annotated[
        str | None, Header(description='The version you last saw, as its ETag ("3").')
    ] = None,
) -> int | None:
    return parse_if_match(if_match)


DatabaseDep = Annotated[Database, Depends(get_db)]
ActorDep = Annotated[str, Depends(get_actor)]
IfMatchDep = Annotated[int | None, Depends(get_if_match)]
