"""One source's unexpected exception never takes down its siblings.

The old compile job caught only KairoError per source; anything else escaped the
TaskGroup, cancelled the siblings (a started run could be left STARTING without its
Apify id) and the job failed as `internal` with no evidence status at all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pipeline_kit import Kit

from kairo_ingest import errors
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import tables
from kairo_ingest.domain import evidence, registry
from kairo_ingest.pipeline import compile_job, store
from support import outcomes

R = tables.apify_runs
TWO = [("tiktok", "profile_videos", "@acme"), ("instagram", "posts", "@acme")]


def _assert_sibling_refreshed(result: compile_job.Result) -> None:
    refreshed = outcomes.only(result.evidence_status["refreshed"])
    assert refreshed["platform"] == "instagram"
    assert refreshed["apify_status"] == "SUCCEEDED"
    assert refreshed["raw_items"] > 0


async def _assert_no_run_left_starting(kit: Kit) -> None:
    for run in await kit.rows(R):
        assert run.status != "STARTING", run
        assert run.apify_run_id is not None, run


@pytest.mark.parametrize(
    "crash",
    [KeyError("defaultDatasetId"), RecursionError("maximum recursion depth"), AssertionError()],
    ids=["KeyError", "RecursionError", "AssertionError"],
)
async def test_an_unexpected_exception_in_one_source_is_its_failed_entry(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, crash: Exception
) -> None:
    store_page = store.store_page

    async def crashing(*args: Any, **kwargs: Any) -> store.Counts:
        if kwargs["platform"] == "tiktok":
            raise crash
        return await store_page(*args, **kwargs)

    monkeypatch.setattr(store, "store_page", crashing)
    brand, _ = await kit.brand(TWO)

    result = await compile_job.run(kit.deps(), await kit.lease(brand))

    failed = outcomes.only(result.evidence_status["failed"])
    assert (failed["platform"], failed["error_kind"], failed["retryable"]) == (
        "tiktok",
        "internal",
        True,
    )
    assert failed.get("apify_status") == "SUCCEEDED", "the entry names the run it failed on"
    assert type(crash).__name__ in failed["error"]
    _assert_sibling_refreshed(result)
    assert result.verdict is evidence.Verdict.RETRY
    assert result.error is not None
    assert result.error.kind is errors.ErrorKind.INTERNAL
    await _assert_no_run_left_starting(kit)


async def test_an_exception_outside_the_run_is_the_source_failed_entry(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any run exists (here: the capability check raises), still an entry."""
    enabled = registry.capability_enabled

    def crashing(platform: str, capability: str, *args: Any) -> tuple[bool, str]:
        if platform == "tiktok":
            raise KeyError(capability)
        return enabled(platform, capability, *args)

    monkeypatch.setattr(registry, "capability_enabled", crashing)
    brand, _ = await kit.brand(TWO)

    result = await compile_job.run(kit.deps(), await kit.lease(brand))

    failed = outcomes.only(result.evidence_status["failed"])
    assert (failed["platform"], failed["error_kind"], failed["reason"]) == (
        "tiktok",
        "internal",
        "crashed",
    )
    _assert_sibling_refreshed(result)
    await _assert_no_run_left_starting(kit)


class _NoDatasetId:
    """The real client, but every run object lacks ``defaultDatasetId``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in {"start_run", "get_run", "wait_or_abort", "wait_for_run"}:
            return attribute

        async def stripped(*args: Any, **kwargs: Any) -> Any:
            info = await attribute(*args, **kwargs)
            if isinstance(info, apify_models.RunEnd):  # wait_or_abort's answer
                assert info.run is not None
                return dataclasses.replace(
                    info, run=dataclasses.replace(info.run, default_dataset_id=None)
                )
            return dataclasses.replace(info, default_dataset_id=None)

        return stripped


async def test_a_succeeded_run_without_a_dataset_id_is_a_classified_failure(kit: Kit) -> None:
    """The old code asserted ``run.dataset_id is not None``: the AssertionError escaped."""
    brand, _ = await kit.brand(TWO[:1])

    result = await compile_job.run(kit.deps(apify=_NoDatasetId(kit.apify)), await kit.lease(brand))

    failed = outcomes.only(result.evidence_status["failed"])
    assert (failed["error_kind"], failed["retryable"]) == ("apify_transient", True)
    assert "without a default dataset id" in failed["error"]
    await _assert_no_run_left_starting(kit)
