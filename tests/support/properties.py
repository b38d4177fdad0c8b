"""How many examples a property test runs: all of them, unless the inner loop asks for few.

``pytest --hypothesis-profile=fast`` (docs/contributing.md, "The inner loop") loads the
``fast`` profile that ``tests/conftest.py`` registers: every property test runs
:data:`FAST_EXAMPLES` examples instead of its full count. Without the option, and always
under CI (``support.ci``: the option is refused there), each runs its full count.
"""

from __future__ import annotations

from hypothesis import settings

FAST_PROFILE = "fast"
FAST_EXAMPLES = 25

_fast = False


def register() -> None:
    """Register the ``fast`` profile (hypothesis' defaults, fewer examples)."""
    settings.register_profile(FAST_PROFILE, max_examples=FAST_EXAMPLES)


def choose(profile: str | None) -> None:
    """Record the profile the session loads (``--hypothesis-profile``, or None)."""
    global _fast
    _fast = profile == FAST_PROFILE


def examples(full: int) -> int:
    """``full``, or :data:`FAST_EXAMPLES` when the session runs the ``fast`` profile."""
    return min(full, FAST_EXAMPLES) if _fast else full
