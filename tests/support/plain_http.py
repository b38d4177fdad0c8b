"""httpx clients for the servers tests start on 127.0.0.1, which speak plain HTTP.

httpx loads certifi's CA bundle into a new TLS context for every client it builds (50 to
250 ms on a shared 2-CPU machine); these clients never use it, so they share one made
once per session.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def client(base_url: str) -> httpx.AsyncClient:
    """An httpx client for ``base_url``, as ``httpx.AsyncClient(base_url=base_url)``."""
    return httpx.AsyncClient(base_url=base_url, verify=_tls())
