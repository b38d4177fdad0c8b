"""The run ledger page (``/ledger``): the runs no job follows, with why no job wants them;
the runs not ended by account, status and follower; and the runs ended since a day with
the spend of those that ended partial (aborted, capped). HTML and JSON."""

from __future__ import annotations

from console_seed import Seeded, client
from ledger_seed import (
    FOLLOWED,
    JOBLESS,
    OF_CANCELLED_JOB,
    OF_DONE_JOB,
    RELEASED,
    seed_ledger,
)

JSON = {"Accept": "application/json"}


async def test_ledger_page_lists_every_run_no_job_follows_and_the_partial_spend(
    seeded: Seeded,
) -> None:
    await seed_ledger(seeded.url)
    async with client(seeded.url) as http:
        page = await http.get("/ledger")
        data = (await http.get("/ledger", headers=JSON)).json()
    assert page.status_code == 200
    unfollowed = {r["run_id"]: r for r in data["unfollowed"]}
    assert set(unfollowed) == {str(RELEASED), str(OF_DONE_JOB), str(OF_CANCELLED_JOB), str(JOBLESS)}
    assert unfollowed[str(RELEASED)]["unwanted"] is None  # its job may still want it
    assert unfollowed[str(OF_DONE_JOB)]["unwanted"] == "its job is succeeded"
    assert unfollowed[str(OF_CANCELLED_JOB)]["unwanted"] == "its job was cancelled"
    assert unfollowed[str(JOBLESS)]["unwanted"] == "its job is gone"
    table = page.text[page.text.index('id="unfollowed"') :]
    table = table[: table.index("</table>")]
    for run_id in unfollowed:
        assert run_id in table
    assert str(FOLLOWED) not in page.text

    live = {(r["account"], r["status"], r["followed_by"]): r["runs"] for r in data["live"]}
    assert live[("default", "RUNNING", "job")] >= 1
    assert live[("default", "RUNNING", "ledger")] == 3
    assert data["partial_spend"] == [
        {"account": "default", "partial_reason": "aborted", "runs": 1, "usd": 0.5},
        {"account": "default", "partial_reason": "charge_cap", "runs": 1, "usd": 1.25},
    ]
    assert "$1.2500" in page.text[page.text.index('id="partial-spend"') :]


async def test_ledger_page_refuses_a_bad_day(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        bad = await http.get("/ledger?since=someday", headers=JSON)
        old = await http.get("/ledger?since=2001-01-01", headers=JSON)
    assert bad.status_code == 400
    assert old.status_code == 400
