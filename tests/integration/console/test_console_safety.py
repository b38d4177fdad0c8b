"""The console's gate: tokens, sessions, CSRF, Host checks; and the two actions."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, XSS_JOB, Seeded, client, csrf_of

from kairo_ingest.console import security
from kairo_ingest.db import engine as db_engine


async def _status(url: str, job_id: uuid.UUID) -> str:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return str(
                await conn.scalar(sa.text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id})
            )
    finally:
        await engine.dispose()


async def test_unauthenticated_request_to_a_guarded_console_gets_401(seeded: Seeded) -> None:
    async with client(seeded.url, console_token=CONSOLE_TOKEN, host="10.1.2.3:8081") as http:
        for path in ("/", "/jobs", f"/jobs/{XSS_JOB}", "/runs", "/brands"):
            response = await http.get(path)
            assert response.status_code == 401, path
            assert 'name="token"' in response.text  # the login form, and nothing else
            assert str(XSS_JOB) not in response.text
        wrong = await http.get("/", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        right = await http.get("/", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        assert right.status_code == 200
        post = await http.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": "x"})
        assert post.status_code == 401
    assert await _status(seeded.url, seeded.pending_job) == "pending"


async def test_login_form_sets_an_httponly_samesite_strict_session(seeded: Seeded) -> None:
    async with client(seeded.url, console_token=CONSOLE_TOKEN, host="10.1.2.3:8081") as http:
        refused = await http.post("/login", data={"token": "wrong-token-wrong-token"})
        assert refused.status_code == 401
        assert security.SESSION_COOKIE not in refused.headers.get("set-cookie", "")
        response = await http.post("/login", data={"token": CONSOLE_TOKEN})
        assert response.status_code == 303
        cookie = next(
            v
            for k, v in response.headers.multi_items()
            if k == "set-cookie" and v.startswith(security.SESSION_COOKIE)
        )
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert (await http.get("/")).status_code == 200  # the client kept the cookie
    async with client(seeded.url, console_token=CONSOLE_TOKEN, host="10.1.2.3:8081") as http:
        forged = await http.get("/", headers={"cookie": f"{security.SESSION_COOKIE}=123.abc"})
        assert forged.status_code == 401


async def test_cookies_are_secure_behind_tls(seeded: Seeded) -> None:
    async with client(seeded.url, console_token=CONSOLE_TOKEN, host="10.1.2.3:8081") as http:
        plain = await http.post("/login", data={"token": CONSOLE_TOKEN})
        behind_tls = await http.post(
            "/login", data={"token": CONSOLE_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
    assert all("Secure" not in v for k, v in plain.headers.multi_items() if k == "set-cookie")
    cookies = [v for k, v in behind_tls.headers.multi_items() if k == "set-cookie"]
    assert cookies
    assert all(v.endswith("; Secure") for v in cookies)


async def test_post_without_csrf_token_is_refused_and_changes_nothing(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        page = await http.get(f"/jobs/{seeded.pending_job}")
        csrf = csrf_of(page.text)
        for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": csrf + "0"}):
            response = await http.post(f"/jobs/{seeded.pending_job}/cancel", data=data)
            assert response.status_code == 403, data
        assert await _status(seeded.url, seeded.pending_job) == "pending"
        # The right token without its cookie (another site's form) is refused too.
        async with client(seeded.url) as other:
            stray = await other.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": csrf})
            assert stray.status_code == 403
        assert await _status(seeded.url, seeded.pending_job) == "pending"


async def test_cancel_and_retry_with_csrf_change_the_job_like_the_cli(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        csrf = csrf_of((await http.get(f"/jobs/{seeded.pending_job}")).text)
        cancelled = await http.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 303
        assert cancelled.headers["location"] == f"/jobs/{seeded.pending_job}?done=cancelled"
        assert await _status(seeded.url, seeded.pending_job) == "cancelled"
        retried = await http.post(f"/jobs/{seeded.pending_job}/retry", data={"csrf": csrf})
        assert retried.status_code == 303
        assert await _status(seeded.url, seeded.pending_job) == "pending"
        # A succeeded job cannot be cancelled: the queue's own message, shown on the page.
        refused = await http.post(f"/jobs/{seeded.demo_jobs[0]}/cancel", data={"csrf": csrf})
        assert refused.status_code == 409
        assert "only pending or running jobs can be cancelled" in refused.text
    assert await _status(seeded.url, seeded.demo_jobs[0]) == "succeeded"


async def test_bearer_requests_need_no_csrf_token(seeded: Seeded) -> None:
    bearer = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
    async with client(seeded.url, console_token=CONSOLE_TOKEN) as http:
        response = await http.post(f"/jobs/{seeded.pending_job}/cancel", headers=bearer)
    assert response.status_code == 303
    assert await _status(seeded.url, seeded.pending_job) == "cancelled"


async def test_a_tokenless_console_refuses_a_foreign_host_header(seeded: Seeded) -> None:
    async with client(seeded.url, host="attacker.example:8081") as http:
        assert (await http.get("/")).status_code == 403
    async with client(seeded.url, host="localhost:8081") as http:
        assert (await http.get("/")).status_code == 200
