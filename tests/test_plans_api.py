"""The plans API on both backends: versions, validation as problem+json, YAML, documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from command.auth import Role, create_user
from gis.errors import InvalidInput
from gis.storage.db import Database
from gis.storage.tables import PlanTemplateRow
from plans.store import get_plan, load_plan_files
from tests.conftest import DEMO_ID
from tests.problems import assert_problem
from tests.test_plan_workflow import approve_latest
from tests.test_plans import plan_data

BASE = f"/api/sites/{DEMO_ID}/plans"
FIXTURE_PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"


def create(client: TestClient) -> None:
    response = client.post(BASE, json=plan_data())
    assert response.status_code == 201, response.text
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"{BASE}/chlorine-leak"


def test_create_list_get_and_version(anonymous_client: TestClient, db: Database) -> None:
    client = anonymous_client
    with db.write() as session:  # a real user and a real login; the plan records who it was
        create_user(session, "planner-li", "planner-li-password", [Role.PLANNER])
    login = client.post(
        "/api/auth/login", json={"username": "planner-li", "password": "planner-li-password"}
    )
    assert login.status_code == 200, login.text
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    create(client)
    listed = client.get(BASE).json()["plans"]
    assert [(p["id"], p["version"], p["scenario"]) for p in listed] == [
        ("chlorine-leak", 1, "chlorine-leak")
    ]
    approve_latest(client, db, "chlorine-leak")  # the next change makes version 2
    changed = plan_data()
    changed["levels"]["L1"]["steps"][0]["target"]["within_s"] = 90
    # Issue 15: the 428 named properties.version, which plans do not have.
    required = assert_problem(
        client.put(f"{BASE}/chlorine-leak", json=changed), 428, field="If-Match"
    )
    assert "properties.version" not in required["detail"] and "If-Match" in required["detail"]
    assert_problem(
        client.put(f"{BASE}/chlorine-leak", json=changed, headers={"If-Match": '"7"'}),
        412,
        field="version",
    )
    response = client.put(f"{BASE}/chlorine-leak", json=changed, headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"2"'
    latest = client.get(f"{BASE}/chlorine-leak").json()
    first = client.get(f"{BASE}/chlorine-leak", params={"version": 1}).json()
    assert latest["template"]["levels"]["L1"]["steps"][0]["target"]["within_s"] == 90
    assert first["template"]["levels"]["L1"]["steps"][0]["target"]["within_s"] == 120
    assert first["created_by"] == "planner-li"
    versions = client.get(f"{BASE}/chlorine-leak/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]


def test_validation_errors_are_problems_with_paths_and_nothing_is_saved(
    client: TestClient,
) -> None:
    bad = plan_data()
    bad["levels"]["L1"]["steps"][0]["depends_on"] = ["l1-isolate"]
    bad["levels"]["L1"]["materials"] = [{"kind": "scba", "quantity": 100000}]
    body = assert_problem(client.post(BASE, json=bad), 422, field="levels.L1.materials[0].quantity")
    assert any("cycle" in e["reason"] for e in body["errors"])
    assert client.get(BASE).json()["plans"] == []
    report = client.post(f"{BASE}/validate", json=bad).json()
    assert report["valid"] is False
    assert {e["field"] for e in report["errors"]} >= {"levels.L1.materials[0].quantity"}
    assert client.post(f"{BASE}/validate", json=plan_data()).json() == {
        "valid": True,
        "errors": [],
    }
    assert client.get(BASE).json()["plans"] == []


def test_schema_errors_name_the_field(client: TestClient) -> None:
    bad = plan_data()
    bad["levels"]["L2"]["steps"][0]["target"]["within_s"] = "soon"
    assert_problem(client.post(BASE, json=bad), 422, field="levels.L2.steps[0].target.within_s")


def test_one_owner_per_scenario_across_the_site(client: TestClient) -> None:
    create(client)
    other = copy.deepcopy(plan_data())
    other["id"] = "chlorine-leak-b"
    body = assert_problem(client.post(BASE, json=other), 422, field="scenario.key")
    assert "chlorine-leak" in body["errors"][0]["reason"]


def test_a_taken_id_is_a_conflict(client: TestClient) -> None:
    create(client)
    other = copy.deepcopy(plan_data())
    other["scenario"]["key"] = "chlorine-leak-2"
    assert_problem(client.post(BASE, json=other), 409, field="id")


def test_yaml_bodies_and_bad_bodies(client: TestClient) -> None:
    text = yaml.safe_dump(plan_data(), allow_unicode=True)
    response = client.post(BASE, content=text, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert_problem(
        client.post(
            f"{BASE}/validate", content="a: [1, 2", headers={"Content-Type": "application/yaml"}
        ),
        422,
        field="body",
    )
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    assert_problem(
        client.post(f"{BASE}/validate", content=bomb, headers={"Content-Type": "text/yaml"}),
        422,
        field="body",
    )
    assert_problem(
        client.post(BASE, content="{", headers={"Content-Type": "application/json"}),
        422,
        field="body",
    )
    assert_problem(
        client.post(BASE, content="<plan/>", headers={"Content-Type": "application/xml"}),
        415,
        field="Content-Type",
    )
    assert_problem(client.post(BASE, json=["not", "a", "plan"]), 422)


def test_unknown_site_plan_and_version(client: TestClient) -> None:
    assert_problem(client.get("/api/sites/nowhere/plans"), 404)
    assert_problem(client.get(f"{BASE}/no-plan"), 404)
    create(client)
    assert_problem(client.get(f"{BASE}/chlorine-leak", params={"version": 9}), 404)
    assert_problem(client.get(f"{BASE}/chlorine-leak", params={"version": 0}), 422)


def test_path_and_body_must_name_the_same_plan(client: TestClient) -> None:
    create(client)
    other = plan_data()
    other["id"] = "something-else"
    assert_problem(
        client.put(f"{BASE}/chlorine-leak", json=other, headers={"If-Match": '"1"'}),
        422,
        field="id",
    )


def test_printable_documents(client: TestClient) -> None:
    create(client)
    page = client.get(f"{BASE}/chlorine-leak/document")
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "氯气泄漏" in html and "l1 isolate" in html and "<table>" in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    md = client.get(f"{BASE}/chlorine-leak/document", params={"format": "markdown"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert "## L2: workshop / 车间级" in md.text
    assert "| l2 curtain | Fire team | 5 min after l1-isolate" in md.text


def test_demo_plans_load_all_or_nothing_and_validate_against_the_site(
    db: Database, tmp_path: Path
) -> None:
    files = sorted(FIXTURE_PLANS.glob("*.yaml"))
    assert len(files) == 6
    with db.write() as session:
        results = load_plan_files(session, DEMO_ID, files, actor="test")
        assert [what for _, what in results] == ["created"] * 6
        again = load_plan_files(session, DEMO_ID, files, actor="test", if_exists="replace")
        assert {what for _, what in again} == {"left at version 1"}
        loaded = get_plan(session, DEMO_ID, "chlorine-leak")
        assert {lv.value for lv in loaded.template.levels} == {"L1", "L2", "L3", "L4"}
        rows = session.scalars(select(PlanTemplateRow.plan_id)).all()
        assert len(rows) == 6
    # A broken file among good ones: nothing of the batch stays.
    with db.write() as session:
        session.execute(delete(PlanTemplateRow))
    broken = tmp_path / "zz-broken.json"
    broken.write_text(json.dumps({**plan_data(), "id": "broken", "command_role": "nobody"}))
    with pytest.raises(InvalidInput) as caught, db.write() as session:
        load_plan_files(session, DEMO_ID, [*files, broken], actor="test")
    assert "command_role" in {e.field for e in caught.value.errors}
    with db.read() as session:
        assert session.scalars(select(PlanTemplateRow.plan_id)).all() == []


def test_yaml_in_the_same_yaml_out_comments_kept(client: TestClient, db: Database) -> None:
    """Issue 15: a planner's YAML came back as JSON, its comments gone. Each version keeps the
    text as written; ``Accept: application/yaml`` returns it byte for byte."""
    text = (FIXTURE_PLANS / "chlorine-leak.yaml").read_text(encoding="utf-8")
    assert "#" in text  # the fixture has comments to keep
    yaml_type = {"Content-Type": "application/yaml"}
    made = client.post(BASE, content=text.encode(), headers=yaml_type)
    assert made.status_code == 201, made.text
    back = client.get(f"{BASE}/chlorine-leak", headers={"Accept": "application/yaml"})
    assert back.status_code == 200 and back.headers["content-type"].startswith("application/yaml")
    assert back.text == text and back.headers["etag"] == '"1"'
    assert back.headers["vary"] == "Accept"
    approve_latest(client, db, "chlorine-leak")  # the next change makes version 2
    edited = text.replace("within_s: 120", "within_s: 90  # faster, after the 2026 drill", 1)
    assert edited != text
    put = client.put(
        f"{BASE}/chlorine-leak", content=edited.encode(), headers={**yaml_type, "If-Match": '"1"'}
    )
    assert put.status_code == 200, put.text
    latest = client.get(f"{BASE}/chlorine-leak", headers={"Accept": "application/yaml"}).text
    first = client.get(
        f"{BASE}/chlorine-leak", params={"version": 1}, headers={"Accept": "application/yaml"}
    ).text
    assert latest == edited and first == text
    assert client.get(f"{BASE}/chlorine-leak").json()["version"] == 2  # JSON by default
    # A version sent as JSON (here the draft, saved again) is written out as YAML that reads
    # back to the same plan.
    as_json = client.get(f"{BASE}/chlorine-leak").json()["template"]
    put = client.put(f"{BASE}/chlorine-leak", json=as_json, headers={"If-Match": '"2"'})
    assert put.status_code == 200, put.text
    written = client.get(f"{BASE}/chlorine-leak", headers={"Accept": "application/yaml"}).text
    assert written.startswith("# plan chlorine-leak version 2")
    again = client.get(f"{BASE}/chlorine-leak").json()["template"]
    assert plan_from(written) == again


def plan_from(text: str) -> dict[str, object]:
    from plans.model import data_from_yaml, template_from_data

    loaded: dict[str, object] = template_from_data(data_from_yaml(text)).model_dump(mode="json")
    return loaded
