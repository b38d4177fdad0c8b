"""The console's ASGI app: requests, responses, the auth and CSRF gate, and routing.

A bare ASGI app like the health server (service/http.py), so the console adds no web
framework; Jinja2 renders the pages with autoescaping on for every template, so
whatever a page shows (brand ids, identifiers, error texts from scraped data) is text.
"""

from __future__ import annotations

import dataclasses
import http.cookies
import re
import urllib.parse

from kairo_ingest import errors, httpguard, logs
from kairo_ingest.console import responses, security, views

log = logs.get(__name__)

Scope = httpguard.Scope
Receive = httpguard.Receive
Send = httpguard.Send

MAX_BODY_BYTES = 16 * 1024
# Everything the pages need comes from this server; inline SVG needs no script at all.
SECURITY_HEADERS = (
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes = b""
    bearer: bool = False  # authenticated by an Authorization header, not a cookie
    behind_tls: bool = False  # https, directly or per X-Forwarded-Proto

    def form(self) -> dict[str, str]:
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        pairs = urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs)


def _parse(scope: Scope, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except http.cookies.CookieError:
        jar = http.cookies.SimpleCookie()
    query = dict(
        urllib.parse.parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
    )
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=query,
        headers=headers,
        cookies={k: m.value for k, m in jar.items()},
        body=body,
        behind_tls=scope.get("scheme") == "https"
        or headers.get("x-forwarded-proto", "").strip().lower() == "https",
    )


_JOB_ACTION = re.compile(r"^/jobs/([0-9a-fA-F-]{36})/(retry|cancel)$")
_JOB_PAGE = re.compile(r"^/jobs/([0-9a-fA-F-]{36})$")


class Console:
    """The ASGI callable. ``pages`` renders; this class decides who gets to see what."""

    def __init__(self, pages: views.Pages, guard: security.Guard) -> None:
        self.pages = pages
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await httpguard.answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await self._send(send, responses.text(413, "request body too large"))
                return
            if not message.get("more_body"):
                break
        request = _parse(scope, body)
        try:
            response = await self.handle(request)
        except errors.DatabaseError as exc:
            log.warning("console_database_error", error=errors.describe(exc))
            response = responses.text(503, "database unavailable; see the worker's log")
        except Exception:  # one page failing must not show a traceback
            log.exception("console_page_failed", path=request.path)
            response = responses.text(500, "internal error; see the worker's log")
        await self._send(send, response)

    async def handle(self, request: Request) -> responses.Response:
        if not self.guard.required and not security.host_header_is_loopback(
            request.headers.get("host")
        ):
            # No token means loopback only: refuse a foreign Host (DNS rebinding).
            return responses.text(403, "forbidden host")
        if request.path == "/static/console.css":
            return responses.Response(200, views.stylesheet(), "text/css; charset=utf-8")
        nonce = request.cookies.get(security.CSRF_COOKIE) or ""
        fresh_nonce = not nonce
        if fresh_nonce:
            nonce = self.guard.new_nonce()
        ctx = views.Context(csrf=self.guard.csrf_token(nonce), login_required=self.guard.required)
        response = await self._route(request, ctx)
        if fresh_nonce:
            response.set_cookie(security.CSRF_COOKIE, nonce)
        if request.behind_tls:
            # Behind TLS (ours or a proxy's), cookies never travel over plain HTTP. Trusting a
            # client's X-Forwarded-Proto here is harmless: it can only make cookies stricter.
            response.headers = [
                (k, f"{v}; Secure" if k == "set-cookie" else v) for k, v in response.headers
            ]
        response.headers.extend(SECURITY_HEADERS)
        return response

    async def _route(self, request: Request, ctx: views.Context) -> responses.Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return responses.text(405, "method not allowed")
        if request.path == "/login":
            return await self._login(request, ctx)
        if self.guard.required:
            if self.guard.bearer_ok(request.headers.get("authorization")):
                request.bearer = True
            elif not self.guard.session_ok(request.cookies.get(security.SESSION_COOKIE)):
                return self.pages.login(ctx, status=401)
        if request.method == "POST":
            if not request.bearer and not self.guard.csrf_ok(
                request.cookies.get(security.CSRF_COOKIE), request.form().get("csrf")
            ):
                return responses.text(403, "missing or invalid CSRF token; reload the page")
            return await self._post(request, ctx)
        return await self._get(request, ctx)

    async def _login(self, request: Request, ctx: views.Context) -> responses.Response:
        if not self.guard.required:
            return responses.redirect("/")
        if request.method != "POST":
            return self.pages.login(ctx, status=200)
        if not self.guard.token_matches(request.form().get("token", "")):
            log.warning("console_login_refused")
            return self.pages.login(ctx, status=401, failed=True)
        response = responses.redirect("/")
        response.set_cookie(
            security.SESSION_COOKIE,
            self.guard.new_session(),
            max_age=security.SESSION_MAX_AGE_SECONDS,
        )
        return response

    async def _get(self, request: Request, ctx: views.Context) -> responses.Response:
        path = request.path
        if path == "/":
            return await self.pages.overview(ctx)
        if path == "/jobs":
            return await self.pages.jobs(ctx, request.query)
        if match := _JOB_PAGE.match(path):
            return await self.pages.job(ctx, match.group(1), request.query.get("done"))
        if path == "/runs":
            return await self.pages.runs(ctx, request.query)
        if path == "/brands":
            return await self.pages.brands(ctx, request.query)
        return self.pages.not_found(ctx)

    async def _post(self, request: Request, ctx: views.Context) -> responses.Response:
        if request.path == "/logout":
            response = responses.redirect("/login")
            response.set_cookie(security.SESSION_COOKIE, "", max_age=0)
            return response
        if match := _JOB_ACTION.match(request.path):
            return await self.pages.act(ctx, match.group(1), match.group(2))
        return self.pages.not_found(ctx)

    @staticmethod
    async def _send(send: Send, response: responses.Response) -> None:
        headers = [(b"content-type", response.content_type.encode())]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
