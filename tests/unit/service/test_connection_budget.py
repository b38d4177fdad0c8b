"""KAIRO_DATABASE_POOL_SIZE is split between the pool, LISTEN, /readyz and the heartbeat."""

from __future__ import annotations

import pytest

from kairo_ingest import config, errors
from kairo_ingest.service import resources


def test_the_default_budget_is_15_and_the_pool_gets_what_the_others_leave() -> None:
    budget = resources.ConnectionBudget.of(config.load(listen_notify=True))
    assert budget.total == 15
    assert (budget.pool, budget.listen, budget.probe, budget.heartbeat) == (12, 1, 1, 1)


def test_the_budget_does_not_grow_with_concurrency() -> None:
    small = resources.ConnectionBudget.of(config.load(concurrency=1))
    large = resources.ConnectionBudget.of(config.load(concurrency=10_000))
    assert small == large


def test_no_listen_behind_a_transaction_pooler_leaves_its_connection_to_the_pool() -> None:
    budget = resources.ConnectionBudget.of(
        config.load(database_pooler="transaction", database_pool_size=8)
    )
    assert (budget.pool, budget.listen, budget.probe, budget.heartbeat) == (6, 0, 1, 1)


def test_a_budget_too_small_for_the_worker_is_refused_naming_the_variable() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(database_pool_size=config.MIN_DATABASE_POOL_SIZE - 1)
    assert caught.value.variable == "KAIRO_DATABASE_POOL_SIZE"


def test_the_console_takes_its_three_connections_out_of_the_budget() -> None:
    budget = resources.ConnectionBudget.of(config.load(listen_notify=True, console_port=8081))
    assert budget.console == config.CONSOLE_CONNECTIONS == 3
    assert budget.pool == 15 - 1 - 1 - 1 - 3
    assert budget.pool + budget.listen + budget.probe + budget.heartbeat + budget.console == 15


def test_a_budget_too_small_for_worker_and_console_is_refused() -> None:
    least = config.MIN_DATABASE_POOL_SIZE + config.CONSOLE_CONNECTIONS
    config.load(database_pool_size=least, console_port=8081)
    with pytest.raises(errors.ConfigError) as caught:
        config.load(database_pool_size=least - 1, console_port=8081)
    assert "KAIRO_DATABASE_POOL_SIZE" in caught.value.message
