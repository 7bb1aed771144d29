"""Signing in and out: a bearer token for a username and password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field

from command import auth
from command.deps import DatabaseDep, ReaderDep, TokenDep
from command.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)


@router.post(
    "/login",
    summary="Sign in: a bearer token for a username and password",
    description="Send the token as `Authorization: Bearer <token>` until `expires_at`. A wrong "
    "username or password is 401, with the same message either way.",
)
def login(
    db: DatabaseDep,
    request: Request,
    response: Response,
    body: Annotated[
        Login,
        Body(
            openapi_examples={"planner": {"value": {"username": "demo-planner", "password": "…"}}}
        ),
    ],
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    response.headers["Cache-Control"] = "no-store"  # a token: never kept by a cache
    with db.write() as session:
        issued = auth.authenticate(
            session, body.username, body.password, ttl_s=settings.token_ttl_s
        )
    assert issued.user is not None and issued.expires_at is not None
    return {
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_at": issued.expires_at.isoformat().replace("+00:00", "Z"),
        "user": issued.user.to_json(),
    }


@router.post("/logout", status_code=204, summary="Sign out: revoke the token sent")
def logout(db: DatabaseDep, principal: ReaderDep, token: TokenDep) -> Response:
    with db.write() as session:
        auth.revoke(session, token)
    return Response(status_code=204)


@router.get("/me", summary="Who the token belongs to, and their roles")
def me(db: DatabaseDep, principal: ReaderDep) -> dict[str, Any]:
    with db.read() as session:
        return auth.find_user(session, principal.username).to_json()
