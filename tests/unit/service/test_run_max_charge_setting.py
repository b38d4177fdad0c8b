"""KAIRO_APIFY_RUN_MAX_CHARGE_USD is sent to Apify as each run's maxTotalChargeUsd:
unset sends nothing, and a value that is not a finite positive dollar amount up to 1e6 is
a configuration error at start, not a refused start per run."""

from __future__ import annotations

import pytest

from kairo_ingest import config, errors

VARIABLE = "KAIRO_APIFY_RUN_MAX_CHARGE_USD"


def test_unset_or_blank_sends_no_max_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    assert config.load().apify_run_max_charge_usd is None
    monkeypatch.setenv(VARIABLE, "  ")
    assert config.load().apify_run_max_charge_usd is None


@pytest.mark.parametrize(
    ("raw", "usd"), [("0.5", 0.5), ("2", 2.0), ("0.0001", 0.0001), ("1000000", 1e6)]
)
def test_a_positive_dollar_amount_is_accepted(
    raw: str, usd: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, raw)
    assert config.load().apify_run_max_charge_usd == usd


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "-inf", "1000000.01", "1e7", "five"])
def test_anything_else_is_a_config_error_naming_the_variable(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, raw)
    with pytest.raises(errors.ConfigError) as caught:
        config.load()
    assert caught.value.variable == VARIABLE
