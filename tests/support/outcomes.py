"""Turn what a call did into an assertion, so a test fails for the behaviour it pins.

The mutant runner (scripts/run_mutants.py) counts a mutant as killed only when a test fails
on an assertion: an exception escaping the code under test might be any accident. Where a
test's claim *is* "this call returns", "this call raises that" or "this finishes in time",
these helpers state it as an assertion:

* ``await value_of(call)``: the value; an exception instead fails the test, naming it
  (``result_of(function, *args)`` for a plain call);
* ``await error_of(call)``: the exception it raised; a value instead fails the test (then
  assert its type: ``assert isinstance(exc, errors.X), exc``);
* ``await within(seconds, call, what)``: the value; still running after ``seconds`` (a
  generous correctness bound, never a timing claim) fails the test, naming ``what``;
* ``await until(condition, what, seconds)``: re-checks ``condition()`` until it holds;
  still false after ``seconds`` fails the test, naming ``what``;
* ``only(items, what)``: the one item; none or several fail the test (where
  ``[item] = items`` would raise a ``ValueError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def value_of(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except Exception as exc:
        raise AssertionError(f"expected a value, the call raised {_name(exc)}") from exc


def result_of(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        raise AssertionError(f"expected a value, the call raised {_name(exc)}") from exc


async def error_of(awaitable: Awaitable[object]) -> Exception:
    try:
        value = await awaitable
    except Exception as exc:
        return exc
    raise AssertionError(f"expected an exception, the call returned {value!r:.200}")


async def within(seconds: float, awaitable: Awaitable[T], what: str = "the call") -> T:
    async with asyncio.timeout(seconds) as bound:
        try:
            return await awaitable
        except asyncio.CancelledError:
            if bound.expired():
                raise AssertionError(f"{what}: still running after {seconds:g} s") from None
            raise


async def until(
    condition: Callable[[], bool], what: str, seconds: float, *, every_seconds: float = 0.02
) -> None:
    async def holds() -> None:
        while not condition():
            await asyncio.sleep(every_seconds)

    await within(seconds, holds(), f"waiting until {what}")


def only(items: Iterable[T], what: str = "items") -> T:
    found = list(items)
    assert len(found) == 1, f"expected exactly one of {what}, found {len(found)}: {found!r:.300}"
    return found[0]


def _name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"[:300]
