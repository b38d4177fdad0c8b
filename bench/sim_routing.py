"""What the simulator's routing costs per request: GET /v2/actor-runs/{id} on loopback.

Two servers, each in a subprocess under the same uvicorn settings (httptools, as the
simulator's own server), over the same state with one run in it, alternating:

* ``simulator``: the simulator's app (Starlette routing, auth, faults, envelopes);
* ``floor``: the least an answer takes: any request read, then the same run's JSON
  (``{"data": run}``) sent with no routing, no auth and no fault draw, written by hand.

One client connection (kept alive) polls the run ``--requests`` times, ``--rounds`` times.
Reported per server, best round: requests per second as the client saw them (wall) and
the server process's CPU time per request (user + system, from ``/proc``), which a
shared machine disturbs less; then the ratios simulator/floor.

    python bench/sim_routing.py                    # 3,000 requests, 3 rounds, 3 pairs
    python bench/sim_routing.py --requests 200 --rounds 1 --pairs 1   # smoke size
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import uvicorn

import machine_load  # bench/ is the script's directory
from kairo_apify_sim import app as sim_app
from kairo_apify_sim import config as sim_config
from kairo_apify_sim import platform
from kairo_apify_sim import state as sim_state

TOKEN = "bench-token"  # any token: the simulator accepts every one by default


def _floor(state: sim_state.SimState, run_id: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        payload = {"data": state.runs[run_id].to_json()}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _serve(kind: str) -> None:
    """The server side: prints ``PORT RUN_ID`` once it listens, serves until killed."""
    state = sim_state.SimState(sim_config.SimConfig())
    run = state.create_run("bench~actor", {}, token_tag=platform.token_tag(TOKEN))
    app = sim_app.SimulatorApp(state) if kind == "simulator" else _floor(state, run.id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        app, http="httptools", ws="none", lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    print(sock.getsockname()[1], run.id, flush=True)
    await server.serve(sockets=[sock])


def measure(kind: str, requests: int, rounds: int) -> tuple[float, float]:
    """``(best requests/s, best server CPU seconds per request)`` of one server."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port, run_id = proc.stdout.readline().split()
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        best_rate, best_cpu = 0.0, float("inf")
        for _ in range(rounds):
            cpu = _cpu_seconds(proc.pid)
            started = time.perf_counter()
            for _ in range(requests):
                conn.request("GET", f"/v2/actor-runs/{run_id}", headers=auth)
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 200, answer.status
            best_rate = max(best_rate, requests / (time.perf_counter() - started))
            best_cpu = min(best_cpu, (_cpu_seconds(proc.pid) - cpu) / requests)
        conn.close()
        return best_rate, best_cpu
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--serve", choices=["simulator", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    print(
        f"settings: GET /v2/actor-runs/{{id}} x {args.requests}, best of {args.rounds} "
        f"rounds, {args.pairs} pairs; one kept-alive connection on loopback; uvicorn "
        f"with httptools for both servers; {machine_load.line()}",
        flush=True,
    )
    best: dict[str, list[float]] = {}
    for _ in range(args.pairs):
        for kind in ("floor", "simulator"):
            rate, cpu = measure(kind, args.requests, args.rounds)
            print(f"{kind:9} {rate:7.0f} req/s wall   server CPU {cpu * 1e6:5.0f} us/request")
            seen = best.setdefault(kind, [0.0, float("inf")])
            seen[0], seen[1] = max(seen[0], rate), min(seen[1], cpu)
    floor, sim = best["floor"], best["simulator"]
    print(
        f"simulator/floor: wall req/s {sim[0] / floor[0]:.2f}, "
        f"server CPU per request {sim[1] / floor[1]:.2f}"
    )


if __name__ == "__main__":
    main()
