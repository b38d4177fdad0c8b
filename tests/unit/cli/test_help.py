from __future__ import annotations

from kairo_ingest.cli import main
from kairo_ingest.service import health_server, http


def test_the_run_help_states_the_limits_the_code_uses() -> None:
    limits = health_server.Limits()
    text = " ".join(main.RUN_EPILOG.split())
    assert f"{limits.limit_concurrency} concurrent requests" in text
    assert f"{limits.max_connections} open connections" in text
    assert f"{limits.max_head_bytes // 1024} KiB request head" in text
    assert f"within {limits.head_timeout_seconds:g} s" in text
    assert f"{limits.keep_alive_seconds} s keep-alive" in text
    assert f"has not run for {http.LOOP_LAG_LIMIT_SECONDS:g} s" in text
    assert f"{http.DB_CHECK_TIMEOUT_SECONDS:g} s timeout" in text
