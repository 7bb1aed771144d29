"""Every route of the OpenAPI document, fuzzed by Schemathesis against the real server.

The server is uvicorn on a SQLite file holding the demo site and its plans (``LiveServer``).
Each generated request (valid and invalid bodies, parameters, headers and methods) is sent
twice, with a commander's and with a planner's token, and no answer may be a 5xx, carry a
traceback, SQL or a server path, or be an error (4xx) that is not ``application/problem+json``
with the RFC 9457 members (``tests/problems.assert_problem`` checks the same shape elsewhere).
The run is bounded and derandomized (the same requests on every run, so CI does not flake):
about a minute on two cores. ``RALLYPOINT_FUZZ_EXAMPLES=200`` makes a longer, random hunt; what
a hunt finds goes into ``FINDINGS``.

Left out: ``POST /api/auth/logout``, which would end the sessions the run signs in with (its
refusals are tested in tests/test_auth.py). Websocket routes are not in the OpenAPI document.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.core.transport import Response

from command.app import create_app
from command.auth import Role
from command.settings import Settings
from tests.conftest import DEMO_ID, DEMO_PLANS, ROOT, TEST_PASSWORD, site_database
from tests.live_server import LiveServer
from tests.problems import assert_problem

COMMANDER = "fuzz-commander"
PLANNER = "fuzz-planner"
#: A hunt (``RALLYPOINT_FUZZ_EXAMPLES=200``) is random; the bounded run in CI is not.
HUNT = os.environ.get("RALLYPOINT_FUZZ_EXAMPLES")
EXAMPLES = int(HUNT or "15")
#: What RFC 9457 says a problem carries (``instance`` too, as every answer here names its path).
PROBLEM_MEMBERS = {"type": str, "title": str, "status": int, "detail": str, "instance": str}
#: What no answer may carry: a traceback, SQL, a driver's name, where the server's files are.
LEAKS = ("Traceback (most recent call", "[SQL:", "sqlite3.", "psycopg.", str(ROOT), '.py"')
LEFT_OUT = "/api/auth/logout"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url = site_database(
        tmp_path_factory.mktemp("fuzz") / "fuzz.db",
        {COMMANDER: Role.COMMANDER, PLANNER: Role.PLANNER},
    )
    with LiveServer(url) as live:
        yield live


@pytest.fixture(scope="module")
def tokens(server: LiveServer) -> dict[str, dict[str, str]]:
    """Each role's bearer header, signed in through the real login."""
    out = {}
    for username in (COMMANDER, PLANNER):
        login = {"username": username, "password": TEST_PASSWORD}
        answer = httpx.post(f"{server.base}/api/auth/login", json=login)
        assert answer.status_code == 200, answer.text
        out[username] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    return out


def _document() -> dict[str, Any]:
    """The OpenAPI document the server serves (built without a database: no lifespan runs)."""
    return create_app(Settings(database_url="sqlite://")).openapi()


#: Path parameters are mostly the demo site's own ids, so that requests get past "no such
#: site" to the code behind; now and then anything else.
CONFIG = schemathesis.Config.from_dict(
    {
        "dictionaries": {
            "sites": {"values": [DEMO_ID]},
            "plans": {"values": [p.stem for p in sorted(DEMO_PLANS.glob("*.yaml"))]},
            "features": {"values": ["Z-001", "Z-027", "R-0001", "S-005", "P-0001", "E-00001"]},
        },
        "parameters": {
            "path.site_id": {"dictionary": "sites", "probability": 0.9},
            "path.plan_id": {"dictionary": "plans", "probability": 0.7},
            "path.feature_id": {"dictionary": "features", "probability": 0.7},
        },
    }
)
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG).exclude(path=LEFT_OUT)


def test_the_fuzzed_document_is_the_served_one(server: LiveServer) -> None:
    assert httpx.get(f"{server.base}/openapi.json").json() == _document()


def problem_faults(response: Response) -> list[str]:
    """What is wrong with an error answer as an RFC 9457 problem (nothing: an empty list)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        return [f"content type {content_type!r}, not application/problem+json"]
    try:
        body: Any = response.json()
    except ValueError:
        return ["the body is not JSON"]
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    faults = [
        f"{name!r} is not a {kind.__name__}"
        for name, kind in PROBLEM_MEMBERS.items()
        if not isinstance(body.get(name), kind) or body.get(name) in ("", None)
    ]
    if body.get("status") != response.status_code:
        faults.append(f"status {body.get('status')!r} is not the answer's {response.status_code}")
    for error in body.get("errors", []):
        if not (isinstance(error, dict) and error.get("field") and error.get("reason")):
            faults.append(f"error {error!r} lacks a field or a reason")
    return faults


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=HUNT is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_error_a_problem(
    case: Case[Any], server: LiveServer, tokens: dict[str, dict[str, str]]
) -> None:
    for role, headers in tokens.items():
        response = case.call(base_url=server.base, headers=headers, timeout=30)
        where = f"{role}: {case.as_curl_command(headers=headers)}\n-> {response.status_code}"
        assert response.status_code < 500, f"{where} {response.text[:500]}"
        leaked = [leak for leak in LEAKS if leak in response.text]
        assert not leaked, f"{where}: the answer carries {leaked}\n{response.text[:500]}"
        if response.status_code >= 400:
            faults = problem_faults(response)
            assert not faults, f"{where}: {faults}\n{response.text[:500]}"


#: What the fuzzing found, kept as plain requests so that each stays fixed whatever the
#: generator draws next: (role, method, path, raw JSON body, the status, the field named).
FINDINGS = [
    # An unknown empty key was named as the field "": an error without a field.
    (PLANNER, "POST", "/api/sites", '{"": null}', 422, "body"),
]


@pytest.mark.parametrize(("role", "method", "path", "body", "status", "field"), FINDINGS)
def test_what_the_fuzzing_found_stays_fixed(
    server: LiveServer,
    tokens: dict[str, dict[str, str]],
    role: str,
    method: str,
    path: str,
    body: str,
    status: int,
    field: str,
) -> None:
    headers = {**tokens[role], "content-type": "application/json"}
    answer = httpx.request(method, f"{server.base}{path}", content=body.encode(), headers=headers)
    problem = assert_problem(answer, status, field=field)
    assert not [leak for leak in LEAKS if leak in answer.text], problem
