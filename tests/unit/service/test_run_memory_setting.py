"""KAIRO_APIFY_RUN_MEMORY_MBYTES is sent to Apify as each run's memory, so a
value Apify would refuse is a configuration error at start, not a failed start per run."""

from __future__ import annotations

import pytest

from kairo_ingest import config, errors


@pytest.mark.parametrize("memory", [128, 1024, 4096, 32768])
def test_a_power_of_2_from_128_mb_to_32_gb_is_accepted(memory: int) -> None:
    assert config.load(apify_run_memory_mbytes=memory).apify_run_memory_mbytes == memory


@pytest.mark.parametrize("memory", [64, 1000, 3072, 65536])
def test_a_memory_apify_would_refuse_is_a_config_error(memory: int) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(apify_run_memory_mbytes=memory)
    assert caught.value.variable == "KAIRO_APIFY_RUN_MEMORY_MBYTES"
