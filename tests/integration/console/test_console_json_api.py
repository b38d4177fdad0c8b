"""The JSON API: every route answers ``Accept: application/json`` with what
``/api/openapi.json`` says, and the document names every route.

Each answer is validated with ``jsonschema`` (Draft 2020-12, OpenAPI 3.1's own dialect)
against the response schema the document gives for its path, method and status.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import jsonschema
import pytest
from console_seed import CONSOLE_TOKEN, XSS_BRAND, XSS_JOB, Seeded, client
from incident_seed import INCIDENT_KIND, seed_incident_at
from ledger_seed import seed_ledger
from starlette import routing

from kairo_ingest.console import openapi
from kairo_ingest.service import demo

BEARER = {"Authorization": f"Bearer {CONSOLE_TOKEN}", "Accept": "application/json"}
NOT_IN_THE_API = {"/static/console.css", "/login", "/logout", "/{rest:path}"}


class Checker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, str]] = set()
        self.templates = [
            (path, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
            for path in document["paths"]
        ]

    def template(self, path: str) -> str:
        matches = [t for t, rx in self.templates if rx.match(path)]
        assert matches, f"{path} is not in the OpenAPI document"
        # A literal path (/jobs/bulk) wins over a template (/jobs/{job_id}).
        return min(matches, key=lambda t: t.count("{"))

    def check(self, method: str, response: httpx.Response) -> Any:
        path = response.request.url.path
        template = self.template(path)
        operation = self.document["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (method, path, status, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), path
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        root = {"allOf": [schema], "components": self.document["components"]}
        body = response.json()
        jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).validate(body)
        self.seen.add((template, method.lower(), status))
        return body


async def test_every_answer_matches_the_openapi_document(seeded: Seeded) -> None:
    await seed_incident_at(seeded.url, 5)
    await seed_ledger(seeded.url)
    async with client(seeded.url, login=False, headers=BEARER) as http:
        document = (await http.get("/api/openapi.json")).json()
        for schema in document["components"]["schemas"].values():
            jsonschema.Draft202012Validator.check_schema(schema)
        api = Checker(document)
        api.check("GET", await http.get("/api/openapi.json"))

        async def get(path: str, **params: str) -> Any:
            return api.check("GET", await http.get(path, params=params))

        async def post(path: str, body: dict[str, Any] | None = None) -> Any:
            return api.check("POST", await http.post(path, json=body or {}))

        overview = await get("/")
        assert overview["depth"]["pending"] >= 1
        jobs = await get("/jobs")
        for params in (
            {"status": "failed"},
            {"kind": "compile"},
            {"error_kind": INCIDENT_KIND},
            {"q": "crashed"},
            {"handle": "acme"},
            {"brand": str(XSS_BRAND)},
            {"since": "2020-01-01", "until": "2999-01-01T00:00"},
            {"after": jobs["jobs"][0]["created_at"] + "_" + jobs["jobs"][0]["id"]},
        ):
            await get("/jobs", **params)
        await get("/jobs", status="exploded")  # 400
        await get("/jobs", since="yesterday")  # 400
        await get(f"/jobs/{seeded.demo_jobs[0]}")
        await get(f"/jobs/{XSS_JOB}")
        await get(f"/jobs/{uuid.uuid4()}")  # 404
        await get("/jobs/not-a-uuid")  # 400
        runs = await get("/runs")
        assert any(r["usage_total_usd"] is not None for r in runs["runs"])
        run = runs["runs"][0]
        for params in (
            {"status": "SUCCEEDED"},
            {"platform": "instagram"},
            {"actor": run["actor_id"]},
            {"account": "default"},
            {"source": run["source_connection_id"]},
        ):
            await get("/runs", **params)
        await get("/runs", platform="myspace")  # 400
        workers = await get("/workers")
        assert workers["thresholds"]["runs_over_seconds"] > 0
        await get("/workers", lease_within="600", runs_over="1")
        await get("/workers", runs_over="forever")  # 400
        ledger = await get("/ledger")
        assert ledger["unfollowed"]
        assert ledger["partial_spend"]
        await get(
            "/ledger", since=(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)).isoformat()
        )
        await get("/ledger", since="someday")  # 400
        brands = await get("/brands")
        assert {b["brand_id"] for b in brands["brands"]} >= {
            str(demo.brand_id(n)) for n in demo.BRANDS
        }
        found = await get("/brands", handle="@globex")
        assert [b["brand_id"] for b in found["brands"]] == [str(demo.brand_id("globex"))]
        spend = await get("/spend")
        assert spend["total_usd"] > 0
        await get("/spend", day=spend["today"])
        await get("/spend", day="someday")  # 400

        # Actions: one job, then in bulk (preview, apply, the same again).
        await post(f"/jobs/{seeded.pending_job}/cancel")
        await post(f"/jobs/{seeded.pending_job}/retry")
        await post(f"/jobs/{seeded.demo_jobs[0]}/cancel")  # 409: succeeded
        await post(f"/jobs/{uuid.uuid4()}/retry")  # 404
        await post("/jobs/not-a-uuid/retry")  # 400
        body = {"action": "retry", "scope": "matching", "filter": {"error_kind": INCIDENT_KIND}}
        preview = await post("/jobs/bulk", body)
        assert preview["matched"] == 5
        apply = body | {
            "action_id": preview["action_id"],
            "snapshot": preview["selection"]["snapshot"],
        }
        await post("/jobs/bulk/apply", apply)
        await post("/jobs/bulk/apply", apply)
        await post("/jobs/bulk", {"action": "explode", "scope": "matching"})  # 400
        abort = {"scope": "matching", "filter": {"status": "RUNNING"}}
        run_preview = await post("/runs/abort", abort)
        assert run_preview["matched"] >= 1
        abort_apply = abort | {
            "action_id": run_preview["action_id"],
            "snapshot": run_preview["selection"]["snapshot"],
        }
        await post("/runs/abort/apply", abort_apply)
        assert (await post("/runs/abort/apply", abort_apply))["replayed"]
        await post("/runs/abort", {"scope": "everything"})  # 400
        audit = await get("/audit")
        await get(f"/audit/{audit['entries'][0]['id']}")
        await get(f"/audit/{uuid.uuid4()}")  # 404
        await get("/audit", after="nonsense")  # 400

    async with client(seeded.url, login=False, headers={"Accept": "application/json"}) as anon:
        for path in document["paths"]:
            concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            method = next(iter(document["paths"][path]))
            response = await anon.request(method.upper(), concrete)
            assert response.status_code == 401, path
            api.check(method, response)
    async with client(seeded.url, login=False) as wrong:
        for _ in range(6):
            response = await wrong.get("/", headers=BEARER | {"Authorization": "Bearer x" * 3})
        api.check("GET", response)
        assert response.status_code == 429

    # Every path and method of the document was exercised with a 200.
    for path, operations in document["paths"].items():
        for method in operations:
            assert (path, method, "200") in api.seen, (path, method)


def test_the_document_names_every_route_of_the_app() -> None:
    from kairo_ingest.console import app as console_app

    document = openapi.document()
    built = console_app.build(_FakeConsole())  # type: ignore[arg-type]
    routes = {
        route.path: sorted(m.lower() for m in (route.methods or ()) if m != "HEAD")
        for route in built.routes
        if isinstance(route, routing.Route) and route.path not in NOT_IN_THE_API
    }
    documented = {path: sorted(ops) for path, ops in document["paths"].items()}
    assert routes == documented


class _FakeConsole:
    """Enough of console.app.Console for building the routes."""

    def __init__(self) -> None:
        from unittest import mock

        self.pages = mock.MagicMock()
        self.endpoint = lambda handler, **_: handler
        self.login = mock.MagicMock()
        self.logout = mock.MagicMock()


@pytest.mark.parametrize("accept", ["application/json", "application/json, */*"])
async def test_json_is_chosen_by_the_accept_header(seeded: Seeded, accept: str) -> None:
    async with client(seeded.url) as http:  # a session cookie works for JSON reads
        response = await http.get("/jobs", headers={"Accept": accept})
        assert response.headers["content-type"].startswith("application/json")
        html = await http.get("/jobs", headers={"Accept": "text/html,application/json"})
        assert html.headers["content-type"].startswith("text/html")
