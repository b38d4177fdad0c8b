"""The simulator's own command (``kairo-apify-sim``, from its package's wheel, and
``python -m kairo_apify_sim``) serves on its own and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys

import httpx
import pytest

SCRIPT = str(pathlib.Path(sys.executable).parent / "kairo-apify-sim")


@pytest.mark.parametrize(
    "entry", [[SCRIPT], [sys.executable, "-m", "kairo_apify_sim"]], ids=["script", "module"]
)
def test_entry_point_announces_its_url_and_stops_on_sigterm(entry: list[str]) -> None:
    command = [*entry, "--port", "0", "--seed", "3"]
    command += ["--config-json", json.dumps({"default_item_count": 4})]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = json.loads(proc.stdout.readline())["base_url"]
        with httpx.Client(base_url=base_url) as http:
            config = http.get("/_sim/config").json()
            assert config["default_item_count"] == 4
            assert config["seed"] == 3
            started = http.post("/v2/actors/apify~instagram-scraper/runs", json={})
            assert started.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
