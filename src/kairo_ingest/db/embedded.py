"""An embedded PostgreSQL (real binaries from the ``pgserver`` wheel) under KAIRO_DATA_DIR.

Used when KAIRO_DATABASE_URL is unset, by ``demo``, and by the test harness when no
server answers. Several kairo-ingest processes may share one data directory: pgserver
counts its users and the last one to leave stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

from kairo_ingest import errors, logs

log = logs.get(__name__)


class EmbeddedPostgres:
    def __init__(self, server: Any, data_dir: pathlib.Path) -> None:
        self._server = server
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        uri: str = self._server.get_uri()
        return uri

    async def stop(self) -> None:
        await asyncio.to_thread(self._server.cleanup)
        log.info("embedded_postgres_stopped", data_dir=str(self.data_dir))


def _start_blocking(pgdata: pathlib.Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal in containers.
        warnings.simplefilter("ignore")
        from pgserver import postgres_server

        return postgres_server.get_server(pgdata, cleanup_mode="stop")


async def start(data_dir: pathlib.Path) -> EmbeddedPostgres:
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.info("embedded_postgres_starting", data_dir=str(pgdata))
    try:
        server = await asyncio.to_thread(_start_blocking, pgdata)
    except Exception as exc:  # pgserver raises plain exceptions from subprocesses
        raise errors.DatabaseUnavailableError(
            f"could not start the embedded PostgreSQL under {pgdata}: {exc}"
        ) from exc
    return EmbeddedPostgres(server, pgdata)


@contextlib.asynccontextmanager
async def running(data_dir: pathlib.Path) -> AsyncIterator[EmbeddedPostgres]:
    pg = await start(data_dir)
    try:
        yield pg
    finally:
        await pg.stop()
