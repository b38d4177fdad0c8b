"""Status vocabularies shared by the queue, the Apify adapter and the pipeline."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
FINISHED_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class AttemptOutcome(enum.StrEnum):
    """How one attempt of a job ended (``job_attempts.outcome``)."""

    SUCCEEDED = "succeeded"  # the handler succeeded
    FAILED = "failed"  # the handler failed (the job retries after a backoff, or fails)
    SNOOZED = "snoozed"  # "not now": refunded, counts against the snooze cap
    CANCELLED = "cancelled"  # stopped because an operator cancelled the job
    RELEASED = "released"  # handed back at shutdown: refunded, an interruption
    GIVEN_UP = "given_up"  # heartbeats could not extend the lease: refunded, an interruption
    REAPED = "reaped"  # the lease expired (its worker died or hung): refunded, an interruption
    HANDED_BACK = "handed_back"  # claimed, but the claim's answer never arrived: refunded
    RUNNING = "running"  # not ended: the job's current attempt (never stored)


class RunStatus(enum.StrEnum):
    """Apify's ActorJobStatus, plus our own two intent states (STARTING, START_FAILED)."""

    STARTING = "STARTING"
    START_FAILED = "START_FAILED"
    READY = "READY"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMING_OUT = "TIMING-OUT"
    TIMED_OUT = "TIMED-OUT"
    ABORTING = "ABORTING"
    ABORTED = "ABORTED"


APIFY_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})
APIFY_ABORTABLE = frozenset({"READY", "RUNNING", "TIMING-OUT"})


def is_terminal(status: str) -> bool:
    """True for Apify's four terminal statuses. Unknown strings are treated as still running."""
    return status in APIFY_TERMINAL


RUN_ENDED = APIFY_TERMINAL | {RunStatus.START_FAILED}
"""Run rows after which nothing more happens: Apify ended the run, or no run was created."""


def has_ended(status: str) -> bool:
    """True for a run row that needs no more following (a terminal run or START_FAILED)."""
    return status in RUN_ENDED


class Platform(enum.StrEnum):
    INSTAGRAM = "instagram"
    LINKEDIN = "linkedin"
    TIKTOK = "tiktok"
    YOUTUBE = "youtube"
    WEB = "web"


class Capability(enum.StrEnum):
    POSTS = "posts"
    REELS = "reels"
    COMPANY_POSTS = "company_posts"
    PROFILE_POSTS = "profile_posts"
    PROFILE_VIDEOS = "profile_videos"
    CHANNEL_VIDEOS = "channel_videos"
    CRAWL_PAGES = "crawl_pages"


class EvidenceBucket(enum.StrEnum):
    REFRESHED = "refreshed"
    REUSED = "reused"
    SKIPPED = "skipped"
    FAILED = "failed"


class JobKind(enum.StrEnum):
    COMPILE = "compile"
