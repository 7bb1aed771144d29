"""The answer of a person called by the call tree, through the link of their call-out.

A call-out (SMS, phone gateway) carries ``/answer#<token>``: the page there posts the token to
``POST /api/notices/answer``. The token answers its one notice and nothing else, so this route
needs no sign-in: the person called is often not a Rallypoint user at all. The token stays out
of every URL the server sees (a fragment is never sent), hence out of the logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from command.post import CommandPost

router = APIRouter(prefix="/api/notices", tags=["call tree"])
FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def get_post(request: Request) -> CommandPost:
    post: CommandPost = request.app.state.post
    return post


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=20, max_length=200, description="The call-out's answer token.")


@router.post(
    "/answer",
    summary="The person called answers their call-out (the token of its link; no sign-in)",
)
def answer(body: Answer, post: Annotated[CommandPost, Depends(get_post)]) -> dict[str, Any]:
    event = post.answer(body.token)
    return {
        "notification": event.data["notification"],
        "site_id": event.site_id,
        "answered_at": event.at.isoformat(),
        "contact": event.data["contact"].get("name"),
    }


def mount(app: FastAPI, frontend: Path = FRONTEND) -> None:
    """The answer page at ``/answer`` (its script under ``/static``)."""

    @app.get("/answer", include_in_schema=False)
    def answer_page() -> Response:
        return FileResponse(frontend / "answer.html", headers={"Cache-Control": "no-store"})
