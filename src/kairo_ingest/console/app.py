"""The console's Starlette app: routes, the credential and CSRF gate, HTML or JSON.

Every route but ``/login`` and the stylesheet needs the credential (``security.py``).
A route answers HTML to a browser and JSON to ``Accept: application/json`` with the same
data (described by ``/api/openapi.json``, see ``openapi.py``). A POST authenticated by
the session cookie is an HTML form and must carry its CSRF token; a JSON POST must show
the bearer token. Jinja2 renders the pages with autoescaping on for every template, so
whatever a page shows (brand ids, identifiers, error texts from scraped data) is text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import pathlib
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jinja2
from starlette import applications, middleware, requests, responses, routing
from uvicorn.middleware import proxy_headers

from kairo_ingest import __version__, errors, logs, webstack
from kairo_ingest.console import openapi, security, views

log = logs.get(__name__)

TEMPLATES = pathlib.Path(__file__).parent / "templates"
MAX_BODY_BYTES = 64 * 1024
APIFY_RUN_URL = "https://console.apify.com/view/runs/{}"
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

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _apify_url(apify_run_id: str | None) -> str | None:
    if not apify_run_id:
        return None
    return APIFY_RUN_URL.format(urllib.parse.quote(apify_run_id, safe=""))


def _usd(value: float | decimal.Decimal | None, places: int = 4) -> str:
    return "-" if value is None else f"${float(value):,.{places}f}"


def _qs(**params: Any) -> str:
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return "?" + urllib.parse.urlencode(kept) if kept else ""


_env.filters.update(ago=views._ago, when=_when, apify_url=_apify_url, usd=_usd)
_env.globals.update(qs=_qs, version=__version__)


def jsonable(value: Any) -> Any:
    """Data as JSON: ids and times as strings, money as numbers."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


@dataclasses.dataclass(frozen=True)
class Ctx:
    """What every template gets besides its data."""

    csrf: str
    login_required: bool = True


def _render(name: str, status: int, ctx: Ctx, tab: str, **values: Any) -> responses.Response:
    body = _env.get_template(name).render(ctx=ctx, page=tab, **values)
    return responses.HTMLResponse(body, status_code=status)


def wants_json(request: requests.Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _client(request: requests.Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: requests.Request) -> dict[str, Any]:
    """The body as a mapping: JSON (an object) or an HTML form (repeated keys as lists)."""
    if request.method != "POST":
        return {}
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            raise errors.UsageError("the body is not JSON") from None
        if not isinstance(parsed, dict):
            raise errors.UsageError("the body must be a JSON object")
        return parsed
    if content_type.startswith("application/x-www-form-urlencoded"):
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        form: dict[str, Any] = {}
        for key, value in pairs:
            if key in form:
                form[key] = (
                    [*form[key], value] if isinstance(form[key], list) else [form[key], value]
                )
            else:
                form[key] = value
        return form
    return {}


Handler = Callable[[views.Request], Awaitable[views.Result]]


class Console:
    """The gate in front of :class:`views.Pages`: it decides who gets to see and do what."""

    def __init__(
        self,
        pages: views.Pages,
        guard: security.Guard,
        throttle: security.Throttle | None = None,
    ) -> None:
        self.pages = pages
        self.guard = guard
        self.throttle = throttle or security.Throttle()

    # --- responses --------------------------------------------------------------------

    def _respond(
        self, request: requests.Request, result: views.Result, ctx: Ctx
    ) -> responses.Response:
        as_json = wants_json(request)
        if isinstance(result, views.Problem):
            if as_json:
                return responses.JSONResponse({"error": result.message}, result.status)
            return _render("error.html", result.status, ctx, result.tab, message=result.message)
        if isinstance(result, views.Redirect):
            if as_json:
                return responses.JSONResponse(jsonable(result.data))
            return responses.RedirectResponse(result.location, status_code=303)
        if as_json or result.always_json:
            return responses.JSONResponse(jsonable(result.data), result.status)
        return _render(
            result.template, result.status, ctx, result.tab, **result.data, **result.html
        )

    def _unauthenticated(
        self, request: requests.Request, ctx: Ctx, message: str
    ) -> responses.Response:
        if wants_json(request):
            return responses.JSONResponse(
                {"error": message}, 401, headers={"www-authenticate": "Bearer"}
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        nxt = security.safe_next(target if request.method in ("GET", "HEAD") else "/")
        return _render("login.html", 401, ctx, "login", failed=False, next=nxt)

    def _throttled(self, request: requests.Request, ctx: Ctx, wait: float) -> responses.Response:
        headers = {"retry-after": str(max(1, round(wait)))}
        message = "too many wrong tokens from this address; wait and try again"
        if wants_json(request):
            return responses.JSONResponse({"error": message}, 429, headers=headers)
        response = _render("error.html", 429, ctx, "login", message=message)
        response.headers.update(headers)
        return response

    # --- the gate ---------------------------------------------------------------------

    def _principal(self, request: requests.Request) -> tuple[security.Principal | None, str | None]:
        """Who the request is, or why not: ``(None, "throttled")`` or ``(None, message)``."""
        client = _client(request)
        shown = self.guard.bearer_value(request.headers.get("authorization"))
        if shown is not None:
            if self.throttle.retry_after_seconds(client) > 0:
                return None, "throttled"
            if self.guard.token_matches(shown):
                return security.Principal(self.guard.identity, "bearer"), None
            self.throttle.failed(client)
            log.warning("console_token_refused", via="bearer", client=client)
            return None, "wrong bearer token"
        principal = self.guard.session(request.cookies.get(security.SESSION_COOKIE))
        if principal is None:
            return None, "log in, or send Authorization: Bearer <token>"
        return principal, None

    def endpoint(
        self, handler: Handler, *, path_param: str | None = None
    ) -> Callable[[requests.Request], Awaitable[responses.Response]]:
        async def serve(request: requests.Request) -> responses.Response:
            nonce = request.cookies.get(security.CSRF_COOKIE) or ""
            fresh = not nonce
            if fresh:
                nonce = self.guard.new_nonce()
            ctx = Ctx(csrf=self.guard.csrf_token(nonce))
            response = await self._gate(request, handler, ctx, path_param)
            if fresh:
                _set_cookie(response, request, security.CSRF_COOKIE, nonce)
            return response

        return serve

    async def _gate(
        self,
        request: requests.Request,
        handler: Handler,
        ctx: Ctx,
        path_param: str | None,
    ) -> responses.Response:
        principal, why = self._principal(request)
        if principal is None:
            if why == "throttled":
                wait = self.throttle.retry_after_seconds(_client(request))
                return self._throttled(request, ctx, wait)
            return self._unauthenticated(request, ctx, why or "unauthenticated")
        try:
            form = await _form(request)
        except errors.UsageError as exc:
            return self._respond(request, views.Problem(400, exc.message), ctx)
        if request.method == "POST" and not principal.bearer:
            if wants_json(request):
                return responses.JSONResponse(
                    {"error": "a JSON POST needs Authorization: Bearer <token>, not a cookie"},
                    403,
                )
            if not self.guard.csrf_ok(
                request.cookies.get(security.CSRF_COOKIE), str(form.get("csrf") or "")
            ):
                return responses.PlainTextResponse(
                    "missing or invalid CSRF token; reload the page\n", 403
                )
        req = views.Request(
            query=dict(request.query_params),
            form=form,
            principal=principal,
            client=_client(request),
            path_id=request.path_params.get(path_param) if path_param else None,
        )
        try:
            result = await handler(req)
            return self._respond(request, result, ctx)
        except errors.UsageError as exc:
            result = views.Problem(400, exc.message)
        except errors.DatabaseError as exc:
            log.warning("console_database_error", error=errors.describe(exc))
            result = views.Problem(503, "database unavailable or too slow; see the log")
        except Exception:  # one page failing must not show a traceback
            log.exception("console_page_failed", path=request.url.path)
            return responses.PlainTextResponse("internal error; see the log\n", 500)
        return self._respond(request, result, ctx)

    # --- login and logout -------------------------------------------------------------

    async def login(self, request: requests.Request) -> responses.Response:
        nonce = request.cookies.get(security.CSRF_COOKIE) or self.guard.new_nonce()
        ctx = Ctx(csrf=self.guard.csrf_token(nonce))
        if request.method == "POST":
            form = await _form(request)
            token = str(form.get("token") or "")
            nxt = security.safe_next(str(form.get("next") or ""))
        else:
            token = request.query_params.get("token") or ""
            nxt = security.safe_next(request.query_params.get("next"))
        if not token:
            response = _render("login.html", 200, ctx, "login", failed=False, next=nxt)
        else:
            response = self._try_token(request, ctx, token, nxt)
        if not request.cookies.get(security.CSRF_COOKIE):
            _set_cookie(response, request, security.CSRF_COOKIE, nonce)
        return response

    def _try_token(
        self, request: requests.Request, ctx: Ctx, token: str, nxt: str
    ) -> responses.Response:
        client = _client(request)
        wait = self.throttle.retry_after_seconds(client)
        if wait > 0:
            return self._throttled(request, ctx, wait)
        if not self.guard.token_matches(token):
            self.throttle.failed(client)
            log.warning("console_login_refused", client=client)
            return _render("login.html", 401, ctx, "login", failed=True, next=nxt)
        response = responses.RedirectResponse(nxt, status_code=303)
        _set_cookie(
            response,
            request,
            security.SESSION_COOKIE,
            self.guard.new_session(),
            max_age=security.SESSION_MAX_AGE_SECONDS,
        )
        return response

    async def logout(self, request: views.Request) -> views.Result:
        return views.Redirect("/login", {"logged_out": True})


def _set_cookie(
    response: responses.Response,
    request: requests.Request,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """Always HttpOnly and SameSite=Strict: no script reads it, no other site sends it.
    Behind TLS (ours, or a proxy's X-Forwarded-Proto) also Secure: trusting a client's
    header here is harmless, it can only make the cookie stricter."""
    secure = (
        request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").strip().lower() == "https"
    )
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=secure
    )


async def _stylesheet(_request: requests.Request) -> responses.Response:
    return responses.Response(
        (TEMPLATES / "console.css").read_bytes(), media_type="text/css; charset=utf-8"
    )


def build(console: Console, *, trusted_proxies: str = "") -> applications.Starlette:
    pages = console.pages
    gate = console.endpoint

    def act(name: str) -> Handler:
        async def handler(req: views.Request) -> views.Result:
            return await pages.act(req, name)

        return handler

    async def logout_then_forget(request: requests.Request) -> responses.Response:
        response = await gate(console.logout)(request)
        if response.status_code in (200, 303):
            response.delete_cookie(security.SESSION_COOKIE, path="/")
        return response

    async def not_found(_req: views.Request) -> views.Result:
        return views.Problem(404, "No such page.")

    async def api_document(_req: views.Request) -> views.Result:
        return views.Page("", openapi.document(), always_json=True)

    routes = [
        routing.Route("/static/console.css", _stylesheet, methods=["GET"]),
        routing.Route("/login", console.login, methods=["GET", "POST"]),
        routing.Route("/logout", logout_then_forget, methods=["POST"]),
        routing.Route("/", gate(pages.overview), methods=["GET"]),
        routing.Route("/jobs", gate(pages.jobs), methods=["GET"]),
        routing.Route("/jobs/bulk", gate(pages.bulk_preview), methods=["POST"]),
        routing.Route("/jobs/bulk/apply", gate(pages.bulk_apply), methods=["POST"]),
        routing.Route("/jobs/{job_id}", gate(pages.job, path_param="job_id"), methods=["GET"]),
        routing.Route(
            "/jobs/{job_id}/retry", gate(act("retry"), path_param="job_id"), methods=["POST"]
        ),
        routing.Route(
            "/jobs/{job_id}/cancel", gate(act("cancel"), path_param="job_id"), methods=["POST"]
        ),
        routing.Route("/runs", gate(pages.runs), methods=["GET"]),
        routing.Route("/runs/abort", gate(pages.runs_abort_preview), methods=["POST"]),
        routing.Route("/runs/abort/apply", gate(pages.runs_abort_apply), methods=["POST"]),
        routing.Route("/workers", gate(pages.workers), methods=["GET"]),
        routing.Route("/ledger", gate(pages.ledger_page), methods=["GET"]),
        routing.Route("/brands", gate(pages.brands), methods=["GET"]),
        routing.Route("/spend", gate(pages.spend_page), methods=["GET"]),
        routing.Route("/audit", gate(pages.audit), methods=["GET"]),
        routing.Route(
            "/audit/{entry_id}", gate(pages.audit_entry, path_param="entry_id"), methods=["GET"]
        ),
        routing.Route("/api/openapi.json", gate(api_document), methods=["GET"]),
        routing.Route("/{rest:path}", gate(not_found), methods=["GET", "POST"]),
    ]
    stack = [
        middleware.Middleware(webstack.FixedHeaders, headers=SECURITY_HEADERS),
        middleware.Middleware(webstack.BodyLimit, max_bytes=MAX_BODY_BYTES),
    ]
    if trusted_proxies.strip():
        # Only these peers may say who the client is (X-Forwarded-For) and that it came
        # over https (X-Forwarded-Proto); anyone else's headers are ignored.
        stack.insert(
            0,
            middleware.Middleware(
                proxy_headers.ProxyHeadersMiddleware, trusted_hosts=trusted_proxies
            ),
        )
    return applications.Starlette(routes=routes, middleware=stack)
