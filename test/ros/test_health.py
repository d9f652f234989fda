"""Pipeline health counters (pure Python: no rclpy needed)."""

from __future__ import annotations

import threading

import pytest

from irstd_ros.ros.health import LATENCY_WINDOW, STAGES, PipelineStats


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_fresh_stats_snapshot_counts_zero_has_every_key_and_no_made_up_latency():
    snap = PipelineStats(clock=FakeClock()).snapshot()
    assert snap == {
        "received": 0, "processed": 0, "dropped": 0, "stale": 0, "stream_restarts": 0, "errors": {},
        "problems_since_last": 0, "received_since_last": 0, "input_hz": 0.0, "output_hz": 0.0,
        "latency_p50_ms": None, "latency_p99_ms": None,
        **{f"{s}_p50_ms": None for s in STAGES},
    }


def test_frames_without_a_live_stamp_leave_the_latency_unmeasured_not_zero():
    stats = PipelineStats(clock=FakeClock())
    stats.on_received(0)
    stats.on_processed(None, {"infer": 3.0})
    snap = stats.snapshot()
    assert snap["latency_p50_ms"] is None and snap["latency_p99_ms"] is None
    assert snap["infer_p50_ms"] == 3.0 and snap["pre_p50_ms"] is None


def test_counters_received_dropped_stale_processed():
    stats = PipelineStats(clock=FakeClock())
    stats.on_received(0)
    stats.on_received(2)  # two waiting frames were pushed out
    stats.on_stale()  # counts as received, not processed
    stats.on_processed(5.0, {"infer": 3.0})
    snap = stats.snapshot()
    assert (snap["received"], snap["dropped"], snap["stale"], snap["processed"]) == (3, 2, 1, 1)


def test_on_error_returns_running_count_per_kind():
    stats = PipelineStats(clock=FakeClock())
    assert [stats.on_error("decode"), stats.on_error("decode"), stats.on_error("oom")] == [1, 2, 1]
    assert stats.snapshot()["errors"] == {"decode": 2, "oom": 1}


def test_snapshot_errors_is_a_copy():
    stats = PipelineStats(clock=FakeClock())
    stats.on_error("x")
    snap = stats.snapshot()
    snap["errors"]["x"] = 99
    stats.on_error("x")
    assert stats.snapshot()["errors"] == {"x": 2}


def test_rates_are_since_the_previous_snapshot():
    clock = FakeClock(10.0)
    stats = PipelineStats(clock=clock)
    for _ in range(20):
        stats.on_received(0)
    for _ in range(10):
        stats.on_processed(1.0, {"infer": 1.0})
    clock.t = 12.0
    first = stats.snapshot()
    assert first["input_hz"] == pytest.approx(10.0)
    assert first["output_hz"] == pytest.approx(5.0)
    # 4 s later with 2 more frames: only those count, over the 4 s
    stats.on_received(0)
    stats.on_stale()
    clock.t = 16.0
    second = stats.snapshot()
    assert second["input_hz"] == pytest.approx(0.5)
    assert second["output_hz"] == 0.0
    assert second["received"] == 22  # totals keep growing


def test_rates_stay_finite_when_the_clock_has_not_moved():
    stats = PipelineStats(clock=FakeClock())
    stats.on_received(0)
    snap = stats.snapshot()
    assert snap["input_hz"] > 0 and snap["input_hz"] != float("inf")


def test_latency_percentiles_are_nearest_rank():
    stats = PipelineStats(clock=FakeClock())
    for v in (4.0, 1.0, 3.0, 2.0):
        stats.on_processed(v, {"infer": 10 * v})
    snap = stats.snapshot()
    assert snap["latency_p50_ms"] == 2.0  # a sample, not the interpolated 2.5
    assert snap["latency_p99_ms"] == 4.0
    assert snap["infer_p50_ms"] == 20.0


def test_latency_window_keeps_only_the_most_recent_frames():
    stats = PipelineStats(clock=FakeClock())
    for _ in range(LATENCY_WINDOW):
        stats.on_processed(1000.0, {"infer": 1000.0})  # old outliers, all pushed out below
    for _ in range(LATENCY_WINDOW):
        stats.on_processed(1.0, {"infer": 2.0})
    snap = stats.snapshot()
    assert snap["latency_p99_ms"] == 1.0
    assert snap["infer_p50_ms"] == 2.0
    assert snap["processed"] == 2 * LATENCY_WINDOW  # the count is not windowed


def test_each_stage_has_its_own_p50_and_a_missing_stage_stays_unmeasured():
    stats = PipelineStats(clock=FakeClock())
    stats.on_processed(30.0, {"arrival": 3.0, "queue": 1.0, "infer": 20.0, "publish": 0.5})
    stats.on_processed(31.0, {"arrival": 5.0, "infer": 22.0})  # no queue: not from submit
    stats.on_processed(29.0, {"arrival": 4.0, "infer": 21.0})
    snap = stats.snapshot()
    assert (snap["arrival_p50_ms"], snap["infer_p50_ms"]) == (4.0, 21.0)
    assert (snap["queue_p50_ms"], snap["publish_p50_ms"]) == (1.0, 0.5)  # one sample each
    assert snap["pre_p50_ms"] is None  # never measured


def test_an_unknown_stage_is_refused_with_the_valid_ones():
    stats = PipelineStats(clock=FakeClock())
    with pytest.raises(ValueError, match="unknown latency stages \\['decode'\\].*arrival"):
        stats.on_processed(1.0, {"decode": 1.0})
    assert stats.snapshot()["processed"] == 0


def test_counters_are_thread_safe():
    stats = PipelineStats(clock=FakeClock())
    n, threads = 2000, 4

    def work():
        for _ in range(n):
            stats.on_received(1)
            stats.on_error("e")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    snap = stats.snapshot()
    assert snap["received"] == snap["dropped"] == n * threads
    assert snap["errors"] == {"e": n * threads}


def test_problems_are_counted_since_the_previous_snapshot_so_a_warning_can_clear():
    stats = PipelineStats(clock=FakeClock())
    stats.on_error("unknown_encoding")
    stats.on_received(1)  # one superseded frame
    assert stats.on_stale() == 1
    stats.on_dropped(2)  # two waiting frames discarded
    assert stats.snapshot()["problems_since_last"] == 5
    stats.on_received(0)
    stats.on_processed(1.0, {})
    later = stats.snapshot()
    assert later["problems_since_last"] == 0  # an hour of good frames: no longer a problem
    assert later["dropped"] == 3 and later["stale"] == 1 and later["errors"] == {"unknown_encoding": 1}


def test_frames_received_are_counted_since_the_previous_snapshot_so_no_input_shows():
    """/diagnostics warns of a period without a frame (a camera whose QoS cannot match, or
    none at all): the snapshot says how many arrived since the previous one, stale ones too."""
    stats = PipelineStats(clock=FakeClock())
    stats.on_received(0)
    stats.on_stale()
    assert stats.snapshot()["received_since_last"] == 2
    assert stats.snapshot()["received_since_last"] == 0  # none since: no input
