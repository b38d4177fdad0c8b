"""What a console handler returns: a status, a body and headers (cookies among them)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def set_cookie(self, name: str, value: str, *, max_age: int | None = None) -> None:
        """Always HttpOnly and SameSite=Strict: no script reads it, no other site sends it."""
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        self.headers.append(("set-cookie", "; ".join(parts)))


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


def redirect(location: str) -> Response:
    """303 See Other: after a POST the browser GETs the page (no resubmission on reload)."""
    return Response(303, b"", headers=[("location", location)])
