"""The opening reads of jobs that start together, in one statement.

A claim starts its whole batch of jobs in one turn of the event loop, and each compile
job's first act is its opening read (:mod:`kairo_ingest.db.opening`). Issued one by
one, each pays a pool checkout, a statement and a socket write of its own: for a brand
without sources that was nearly all of the job's cost (issue 12). Here the reads that
arrive while none is being written are gathered and sent as one ``read_many``; while one
statement is in flight the next batch collects, so a lone job is read at once and a
burst in bulk, with no timer.

The statement runs in a task of its own, not in any job's: a job that is cancelled while
it waits (its lease lost, shutdown) only stops waiting, and the other jobs of the batch
still get their answer. A failed statement fails each read of its batch with the same
classified error, which each job's retry unit (:func:`kairo_ingest.pipeline.tx.call`)
handles as it did for its own read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import opening

MAX_BATCH = 100
"""Pairs per statement: bounds the statement's arrays and a batch's rows."""


@dataclasses.dataclass(eq=False, slots=True)
class _Waiting:
    brand_id: uuid.UUID
    job_id: uuid.UUID
    answer: asyncio.Future[opening.Opening]


class OpeningReads:
    def __init__(self, engine: sa_async.AsyncEngine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self.statements = 0  # read_many statements sent (tests check the batching with it)

    async def read(self, *, brand_id: uuid.UUID, job_id: uuid.UUID) -> opening.Opening:
        answer: asyncio.Future[opening.Opening] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(brand_id, job_id, answer))
        if self._writer is None:
            self._writer = asyncio.create_task(self._send(), name="kairo-opening-reads")
        return await answer

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                batch = [w for w in batch if not w.answer.done()]  # drop cancelled waits
                if batch:
                    await self._answer(batch)
        except BaseException:
            for w in self._waiting:  # cancelled: no job may wait for an answer for ever
                w.answer.cancel()
            self._waiting.clear()
            raise
        finally:
            self._writer = None

    async def _answer(self, batch: list[_Waiting]) -> None:
        try:
            self.statements += 1
            async with db_engine.autocommit(self._engine) as conn:
                found = await opening.read_many(conn, [(w.brand_id, w.job_id) for w in batch])
        except Exception as exc:  # noqa: BLE001 - each waiting job gets the error to handle
            for w in batch:
                if not w.answer.done():
                    w.answer.set_exception(exc)
            return
        except BaseException:
            # Cancelled (the loop is closing): no waiting job may wait for ever.
            for w in batch:
                with contextlib.suppress(asyncio.InvalidStateError):
                    w.answer.cancel()
            raise
        for w, result in zip(batch, found, strict=True):
            if not w.answer.done():
                w.answer.set_result(result)
