"""The opening reads of jobs that start together, in one statement.

A claim starts its whole batch of jobs in one turn of the event loop, and each compile
job's first act is its opening read (:mod:`kairo_ingest.db.opening`). Issued one by
one, each pays a pool checkout, a statement and a socket write of its own: for a brand
without sources that was nearly all of the job's cost. Here the reads asked
for in one turn of the loop are sent together as one ``read_many``, at the end of that
turn (``call_soon``), with no timer: a lone job is read at once, a claimed batch in bulk.

Each batch is a task of its own, and batches do not wait for each other: a statement
that stalls (a half-open connection, a stuck backend) holds up its own batch only, as a
job's own read did before, never the reads asked for after it. A job that is cancelled
while it waits (its lease lost, shutdown) only stops waiting; the rest of its batch still
gets the answer. A failed statement fails each read of its batch with the same
classified error, which each job's retry unit (:func:`kairo_ingest.pipeline.tx.call`)
handles as it did for its own read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
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
        self._sending: set[asyncio.Task[None]] = set()  # strong references to the batches
        self.statements = 0  # read_many statements sent (tests check the batching with it)

    async def read(self, *, brand_id: uuid.UUID, job_id: uuid.UUID) -> opening.Opening:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[opening.Opening] = loop.create_future()
        if not self._waiting:
            # The first read of this turn: send the turn's reads once it is over.
            loop.call_soon(self._send_waiting)
        self._waiting.append(_Waiting(brand_id, job_id, answer))
        return await answer

    def _send_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        asked = [w for w in waiting if not w.answer.done()]  # drop cancelled waits
        for start in range(0, len(asked), self._max_batch):
            batch = asked[start : start + self._max_batch]
            task = asyncio.create_task(self._answer(batch), name="kairo-opening-reads")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _answer(self, batch: list[_Waiting]) -> None:
        self.statements += 1
        try:
            async with db_engine.autocommit(self._engine) as conn:
                found = await opening.read_many(conn, [(w.brand_id, w.job_id) for w in batch])
        except asyncio.CancelledError:
            # Only when the loop itself is being torn down: the jobs were not cancelled,
            # so they get a retryable error, not a cancellation they did not ask for.
            _fail(batch, errors.DatabaseUnavailableError("the opening read was interrupted"))
            raise
        except Exception as exc:  # noqa: BLE001 - each waiting job gets the error to handle
            _fail(batch, exc)
            return
        for w, result in zip(batch, found, strict=True):
            if not w.answer.done():
                w.answer.set_result(result)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for w in batch:
        if not w.answer.done():
            w.answer.set_exception(exc)
