"""What a span costs, with tracing off and on (a CPU micro-benchmark, no I/O).

Each loop opens and closes ``--spans`` spans of ``kairo_ingest.tracing`` with three
string attributes (a source's) and adds one attribute inside, as the pipeline does:

* ``empty``: the loop with a dict copy and no span (the floor);
* ``off``: no provider installed (the default; ``span`` hands back the invalid span);
* ``api-noop``: the OpenTelemetry API's own no-op tracer, which ``span`` skips;
* ``on``: the SDK with a batch span processor and an exporter that drops every batch.

Reported: microseconds per span, the best of ``--rounds``.

    python bench/tracing_overhead.py                  # 200,000 spans, 3 rounds
    python bench/tracing_overhead.py --spans 20000    # smoke size
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export

import machine_load  # bench/ is the script's directory
from kairo_ingest import tracing

ATTRIBUTES = {
    "kairo.source.id": "3f1e4a4c-1a53-4e0e-9b55-7d0f7c9a0b11",
    "kairo.source.platform": "tiktok",
    "kairo.source.capability": "profile_videos",
}


class DropExporter(export.SpanExporter):
    def export(self, spans: Sequence[sdk_trace.ReadableSpan]) -> export.SpanExportResult:
        return export.SpanExportResult.SUCCESS


def spans(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        with tracing.span("source tiktok.profile_videos", ATTRIBUTES) as current:
            tracing.annotate(current, {"kairo.page.raw": 10})
    return time.perf_counter() - started


def api_noop(n: int) -> float:
    tracer = trace.NoOpTracer()
    started = time.perf_counter()
    for _ in range(n):
        with tracer.start_as_current_span("source tiktok.profile_videos", attributes=ATTRIBUTES):
            pass
    return time.perf_counter() - started


def empty(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        dict(ATTRIBUTES)
    return time.perf_counter() - started


def best(fn: Callable[[int], float], n: int, rounds: int) -> float:
    return min(fn(n) for _ in range(rounds)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000, help="spans per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best counts")
    args = parser.parse_args()
    tracing.use(None)
    print(
        f"settings: {args.spans:,} spans per round ({args.spans // 4 or 1:,} with tracing on), "
        f"three string attributes and one added, best of {args.rounds} rounds; "
        f"{machine_load.line()}"
    )
    print(f"empty     {best(empty, args.spans, args.rounds):8.2f} us per loop")
    print(f"off       {best(spans, args.spans, args.rounds):8.2f} us per span")
    print(f"api-noop  {best(api_noop, args.spans, args.rounds):8.2f} us per span")
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(
        export.BatchSpanProcessor(DropExporter(), max_queue_size=args.spans)
    )
    tracing.use(provider)
    try:
        print(f"on        {best(spans, args.spans // 4 or 1, args.rounds):8.2f} us per span")
    finally:
        tracing.use(None)
        provider.shutdown()


if __name__ == "__main__":
    main()
