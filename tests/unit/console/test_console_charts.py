"""Server-side charts: escaped text, and the queue depth walked back from now."""

from __future__ import annotations

import datetime as dt
import re

from kairo_ingest.console import charts, views

XSS = "<script>alert(1)</script>"


def test_chart_text_is_escaped() -> None:
    svg = str(
        charts.bars_and_line(
            XSS,
            [XSS, "b"],
            [charts.Series(XSS, [1.0, 2.0], "#000")],
            [charts.Series(XSS, [1, 1], "#111")],
        )
    )
    assert XSS not in svg
    assert "&lt;script&gt;" in svg


def _bucket(i: int, created: int, succeeded: int) -> dict[str, object]:
    start = dt.datetime(2026, 11, 29, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i)
    return {
        "starts_at": start,
        "created": created,
        "succeeded": succeeded,
        "failed": 0,
        "cancelled": 0,
    }


def test_queue_depth_is_walked_back_from_the_depth_now() -> None:
    # 10 enqueued in bucket 0, 4 finished in bucket 1, 6 in bucket 2: depth 10, 6, 0.
    buckets = [_bucket(0, 10, 0), _bucket(1, 0, 4), _bucket(2, 0, 6)]
    svg = str(views.throughput_chart(buckets, depth_now=0))
    line = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="#d38b1c"', svg)
    assert len(line) == 1
    ys = [float(point.split(",")[1]) for point in line[0].split()]
    plot_bottom = charts.HEIGHT - charts.PAD_BOTTOM
    top = charts._scale(10)[0]
    heights = [round((plot_bottom - y) / (plot_bottom - charts.PAD_TOP) * top, 6) for y in ys]
    assert heights == [10.0, 6.0, 0.0]


def test_scale_tops_are_round_and_cover_the_peak() -> None:
    for peak in (1, 3, 7, 19, 100, 1234, 999_999):
        top, steps = charts._scale(peak)
        assert top >= peak
        assert steps >= 1
        assert (top / steps) == int(top / steps)
