"""The ending statement states the shared rules (domain.endings) in SQL; these tests hold
its outcome lists, its bound and its parameters to them, so the PostgreSQL adapter and the
in-memory queue cannot drift apart on what a refund or an interruption is."""

from __future__ import annotations

import re
import uuid

from kairo_ingest.domain import endings as ending_rules
from kairo_ingest.domain import retry, statuses
from kairo_ingest.queue import endings, sql

Outcome = statuses.AttemptOutcome


def _listed(statement: object, before: str, after: str = "") -> set[str]:
    """The quoted outcomes of the first ``IN (...)`` list between ``before`` and ``after``
    in the statement."""
    text = " ".join(str(statement).split())
    match = re.search(re.escape(before) + r" IN \(([^)]*)\)" + re.escape(after), text)
    assert match is not None, f"no IN list after {before!r}"
    return {item.strip().strip("'") for item in match.group(1).split(",")}


def _values(outcomes: frozenset[Outcome]) -> set[str]:
    return {outcome.value for outcome in outcomes}


def test_the_statement_refunds_exactly_the_shared_rules_refunds() -> None:
    for statement in (sql.END, sql.REAP, sql.HAND_BACK):
        refunded = _listed(statement, "attempts = CASE WHEN e.outcome")
        assert refunded == _values(ending_rules.REFUNDED)


def test_the_statement_counts_exactly_the_shared_rules_interruptions() -> None:
    for statement in (sql.END, sql.REAP):
        counted = _listed(statement, "interruptions = j.interruptions + CASE WHEN e.outcome")
        assert counted == _values(ending_rules.INTERRUPTED)
        capped = _listed(statement, "(e.outcome", " AND j.interruptions + 1 >=")
        assert capped == _values(ending_rules.INTERRUPTED)


def test_the_statement_keeps_the_error_for_the_shared_rules_endings() -> None:
    kept = _listed(sql.END, "= 'succeeded') OR (e.outcome", " AND")
    assert kept == _values(ending_rules.KEEP_ERROR_WHEN_PENDING)


def test_the_reapers_backoff_stops_doubling_where_the_shared_formula_does() -> None:
    text = " ".join(str(sql.REAP).split())
    assert f"power(2.0, least(j.interruptions, {retry.MAX_EXPONENT}))" in text


def test_the_reapers_parameters_are_the_shared_rules() -> None:
    caps = ending_rules.Caps(max_interruptions=4, max_snoozes=7)
    values = endings.reap_values(base_seconds=1.0, cap_seconds=2.0, limit=5, caps=caps)
    assert values["floor"] == retry.JOB_FLOOR
    assert values["error_kind"] == ending_rules.ERROR_KIND[Outcome.REAPED].value
    assert (values["max_interruptions"], values["max_snoozes"]) == (4, 7)
    handed = endings.hand_back_values(owner="w", held=[uuid.uuid4()])
    assert handed["error_kind"] == ending_rules.ERROR_KIND[Outcome.HANDED_BACK].value
    assert handed["max_interruptions"] == ending_rules.DEFAULT_MAX_INTERRUPTIONS


def test_the_queue_caps_are_the_shared_rules_caps() -> None:
    assert endings.Caps is ending_rules.Caps
    assert endings.DEFAULT_CAPS is ending_rules.DEFAULT_CAPS
