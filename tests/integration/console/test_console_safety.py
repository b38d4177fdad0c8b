"""The console's gate: a credential always, sessions, CSRF, the login throttle, ``?next=``;
and the two single-job actions."""

from __future__ import annotations

import html
import uuid

import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, XSS_JOB, Seeded, client, csrf_of

from kairo_ingest import token_strength
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
    async with client(seeded.url, host="10.1.2.3:8081", login=False) as http:
        for path in ("/", "/jobs", f"/jobs/{XSS_JOB}", "/runs", "/brands"):
            response = await http.get(path)
            assert response.status_code == 401, path
            assert 'name="token"' in response.text  # the login form, and nothing else
            assert "job-status" not in response.text
            assert "<table" not in response.text
        wrong = await http.get("/", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        right = await http.get("/", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        assert right.status_code == 200
        post = await http.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": "x"})
        assert post.status_code == 401
    assert await _status(seeded.url, seeded.pending_job) == "pending"


async def test_login_form_sets_an_httponly_samesite_strict_session(seeded: Seeded) -> None:
    async with client(seeded.url, host="10.1.2.3:8081", login=False) as http:
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
        assert "samesite=strict" in cookie.lower()
        assert (await http.get("/")).status_code == 200  # the client kept the cookie
    async with client(seeded.url, host="10.1.2.3:8081", login=False) as http:
        forged = await http.get("/", headers={"cookie": f"{security.SESSION_COOKIE}=123.ab.cd"})
        assert forged.status_code == 401


async def test_cookies_are_secure_behind_tls(seeded: Seeded) -> None:
    async with client(seeded.url, host="10.1.2.3:8081", login=False) as http:
        plain = await http.post("/login", data={"token": CONSOLE_TOKEN})
        behind_tls = await http.post(
            "/login", data={"token": CONSOLE_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
    assert all("Secure" not in v for k, v in plain.headers.multi_items() if k == "set-cookie")
    cookies = [v for k, v in behind_tls.headers.multi_items() if k == "set-cookie"]
    assert cookies
    assert all("; secure" in v.lower() for v in cookies)


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
    async with client(seeded.url, login=False) as http:
        response = await http.post(f"/jobs/{seeded.pending_job}/cancel", headers=bearer)
    assert response.status_code == 303
    assert await _status(seeded.url, seeded.pending_job) == "cancelled"


async def test_a_loopback_host_header_lets_nobody_in(seeded: Seeded) -> None:
    """What a local reverse proxy forwards (nginx keeps ``Host: 127.0.0.1:8081``): refused."""
    for host in ("127.0.0.1:8081", "localhost:8081", "[::1]:8081"):
        async with client(seeded.url, host=host, login=False) as http:
            for path in ("/", "/jobs", "/spend", "/audit", "/api/openapi.json", "/nowhere"):
                assert (await http.get(path)).status_code == 401, (host, path)
            post = await http.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": "x"})
            assert post.status_code == 401
    assert await _status(seeded.url, seeded.pending_job) == "pending"


async def test_without_a_configured_token_the_console_makes_one(seeded: Seeded) -> None:
    """No KAIRO_CONSOLE_TOKEN: a random token of 256 bits, which the login URL carries."""
    async with client(seeded.url, console_token=None, login=False) as http:
        assert (await http.get("/jobs")).status_code == 401
        app = http._transport.app  # type: ignore[attr-defined]
        assert app.generated_token
        assert token_strength.bits(app.token) >= 256
        login = await http.get("/login", params={"token": app.token, "next": "/jobs?status=failed"})
        assert login.status_code == 303
        assert login.headers["location"] == "/jobs?status=failed"
        assert (await http.get("/jobs")).status_code == 200


async def test_a_login_returns_to_the_page_asked_for_and_only_on_this_console(
    seeded: Seeded,
) -> None:
    deep = f"/jobs/{seeded.pending_job}?done=cancelled"
    async with client(seeded.url, login=False) as http:
        asked = await http.get(deep)
        assert asked.status_code == 401
        assert f'name="next" value="{html.escape(deep)}"' in asked.text
        back = await http.post("/login", data={"token": CONSOLE_TOKEN, "next": deep})
        assert back.status_code == 303
        assert back.headers["location"] == deep
        for elsewhere in (
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "javascript:alert(1)",
            "/ok\r\nSet-Cookie: x=1",
        ):
            away = await http.post("/login", data={"token": CONSOLE_TOKEN, "next": elsewhere})
            assert away.status_code == 303
            assert away.headers["location"] == "/", elsewhere


async def test_wrong_tokens_are_throttled_per_client(seeded: Seeded) -> None:
    async with client(seeded.url, login=False) as http:
        for _ in range(security.LOGIN_BURST):
            wrong = await http.post("/login", data={"token": "not-the-token-0123456789abcdef"})
            assert wrong.status_code == 401
        # Out of tries: even the right token waits, by the login form, URL or bearer header.
        throttled = await http.post("/login", data={"token": CONSOLE_TOKEN})
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        by_url = await http.get("/login", params={"token": CONSOLE_TOKEN})
        assert by_url.status_code == 429
        bearer = await http.get("/", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        assert bearer.status_code == 429
        assert security.SESSION_COOKIE not in throttled.headers.get("set-cookie", "")


async def test_wrong_bearer_tokens_spend_the_same_tries(seeded: Seeded) -> None:
    wrong = {"Authorization": "Bearer not-the-token-0123456789abcdef", "Accept": "application/json"}
    async with client(seeded.url, login=False) as http:
        codes = [(await http.get("/jobs", headers=wrong)).status_code for _ in range(7)]
        assert codes == [401] * security.LOGIN_BURST + [429] * (7 - security.LOGIN_BURST)
        login = await http.post("/login", data={"token": CONSOLE_TOKEN})
        assert login.status_code == 429


async def test_a_json_post_with_only_a_cookie_is_refused(seeded: Seeded) -> None:
    async with client(seeded.url) as http:  # logged in: a session cookie
        page = await http.get(f"/jobs/{seeded.pending_job}")
        response = await http.post(
            f"/jobs/{seeded.pending_job}/cancel",
            data={"csrf": csrf_of(page.text)},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 403
        assert "Bearer" in response.json()["error"]
    assert await _status(seeded.url, seeded.pending_job) == "pending"


async def test_a_malformed_job_id_in_a_post_is_a_400(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        csrf = csrf_of((await http.get("/jobs")).text)
        response = await http.post("/jobs/not-a-uuid/cancel", data={"csrf": csrf})
    assert response.status_code == 400


async def test_single_actions_are_audited_with_who_and_from_where(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        csrf = csrf_of((await http.get(f"/jobs/{seeded.pending_job}")).text)
        await http.post(f"/jobs/{seeded.pending_job}/cancel", data={"csrf": csrf})
        audit = (await http.get("/audit", headers={"Accept": "application/json"})).json()
    entry = audit["entries"][0]
    assert entry["action"] == "cancel"
    assert entry["actor"] == security.identity(CONSOLE_TOKEN)
    assert entry["via"] == "session"
    assert entry["client"] == "127.0.0.1"
    assert entry["selection"] == {"ids": [str(seeded.pending_job)]}
    assert (entry["matched"], entry["changed"], entry["state"]) == (1, 1, "done")
