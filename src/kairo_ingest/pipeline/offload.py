"""CPU-bound pipeline work (normalizing and encoding a page) off the event loop.

One dedicated thread, not the default executor and not a process pool:

* The work is pure Python holding the GIL. A thread does not make it faster, but the
  interpreter hands the GIL back every ``sys.getswitchinterval()`` (5 ms), so the loop
  (heartbeats, Apify long-polls, other sources' database round trips) runs between
  slices instead of waiting for a whole page (0.5-1.7 s for big pages, inline).
* One thread, because every extra CPU-bound thread is one more contender the loop may
  lose the GIL to; with one, the loop waits at most about one switch interval. Pages of
  concurrent sources queue for it, which costs nothing: they would share the GIL anyway.
* Not a process: a page would be pickled there and its results pickled back, about as
  costly as normalizing it, with worker processes to start, size and watch.

The caller's context variables (log bindings such as ``source_id``) go with the work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREAD_NAME_PREFIX = "kairo-normalize"

_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _get_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=THREAD_NAME_PREFIX
            )
        return _executor


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the pipeline's CPU thread; the loop stays free meanwhile.

    If the caller is cancelled the call still finishes in its thread (a page is short
    work); its result is dropped.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await loop.run_in_executor(_get_executor(), call)
