"""The load test's transport settings (the run itself is a benchmark: ``irstd load-test``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from _support.cli import one_error_line, run_cli, run_cli_output

from irstd_ros.core.statistics import json_safe
from irstd_ros.errors import ConfigError
from irstd_ros.ros import transport
from irstd_ros.tools import load_test

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "config" / "dds" / "fastdds_large_images.xml"


@pytest.fixture
def clean_dds_env(monkeypatch):
    for key in transport.DDS_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("distro", "variable"), [
    (None, "FASTDDS_DEFAULT_PROFILES_FILE"),  # PyPI wheels: no ROS_DISTRO, Fast DDS 3
    ("kilted", "FASTDDS_DEFAULT_PROFILES_FILE"),
    ("jazzy", "FASTRTPS_DEFAULT_PROFILES_FILE"),
    ("humble", "FASTRTPS_DEFAULT_PROFILES_FILE"),
])
def test_dds_profile_goes_where_the_distributions_fast_dds_reads_it(clean_dds_env, distro, variable):
    clean_dds_env.delenv("ROS_DISTRO", raising=False)
    if distro is not None:
        clean_dds_env.setenv("ROS_DISTRO", distro)
    # a stale legacy setting: Kilted's rmw_fastrtps would take it over FASTDDS_... (emptied)
    clean_dds_env.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/stale/old_profile.xml")
    load_test.use_dds_profile(PROFILE)
    assert os.environ[variable] == str(PROFILE.resolve())
    valued = {k for k, v in transport.dds_environment().items() if v}
    assert valued == {variable}  # one variable with a value: no deprecation warning


def test_missing_dds_profile_is_a_clear_error(clean_dds_env, tmp_path):
    with pytest.raises(ConfigError, match="--dds-profile .*no such file"):
        load_test.use_dds_profile(tmp_path / "absent.xml")
    assert transport.dds_environment() == {}


def test_shipped_profile_enlarges_the_shared_memory_segment_past_a_frame():
    import xml.etree.ElementTree as ET

    root = ET.parse(PROFILE).getroot()
    sizes = [int(e.text or 0) for e in root.iter() if e.tag.endswith("segment_size")]
    frame_bytes = 640 * 512 * 2
    assert sizes and min(sizes) >= 16 * frame_bytes
    transports = [e.text for e in root.iter() if e.tag.endswith("type")]
    assert transports == ["SHM", "UDPv4"]  # UDP stays for discovery and other hosts


def test_load_test_takes_a_dds_profile():
    from irstd_ros.cli.main import build_parser

    args = build_parser().parse_args(["load-test", "--dds-profile", str(PROFILE)])
    assert args.dds_profile == PROFILE


def test_load_test_takes_node_parameters():
    from irstd_ros.cli.main import build_parser

    args = build_parser().parse_args(["load-test", "--param", "qos.depth:=1", "--param", "input.queue_size:=1"])
    assert args.node_params == [("qos.depth", 1), ("input.queue_size", 1)]


def test_load_test_refuses_a_bad_node_parameter(capsys):
    from irstd_ros.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["load-test", "--param", "qos.depth:=0"])
    assert "qos.depth must be in [1" in capsys.readouterr().err


def test_node_parameters_with_options_of_their_own_are_refused():
    with pytest.raises(ConfigError, match="--param model.backend: use --backend"):
        load_test.run_load_test(duration=1.0, node_params=[("model.backend", "openvino")])


@pytest.mark.parametrize(("args", "words"), [
    (["--rate", "nan"], "argument --rate: must be > 0, got nan"),
    (["--rate", "inf"], "argument --rate: must be > 0, got inf"),
    (["--rate", "0"], "argument --rate: must be > 0, got 0"),
    (["--duration", "nan"], "argument --duration: must be > 0, got nan"),
    (["--duration", "-1"], "argument --duration: must be > 0, got -1"),
    (["--warmup", "nan"], "argument --warmup: must be >= 0, got nan"),
    (["--warmup", "-5"], "argument --warmup: must be >= 0, got -5"),
])
def test_load_test_refuses_nonsense_numbers_before_starting_anything(args, words, capsys, monkeypatch):
    """NaN and infinite rates or durations and negative warm-ups are one usage line, not a
    stream that floods (rate inf), never starts (duration nan) or a ValueError from sleep."""
    def no_run(*_a, **_k):
        raise AssertionError("the node is not started with a bad option")

    monkeypatch.setattr(load_test, "run_load_test", no_run)
    code, err = run_cli(capsys, "load-test", *args)
    assert code == 2 and words in one_error_line(err)


def test_load_test_run_refuses_non_finite_numbers_built_without_the_parser():
    import argparse

    args = argparse.Namespace(rate=float("nan"), duration=1.0, warmup=0.0)
    with pytest.raises(ConfigError, match="--rate must be a finite number > 0, got nan"):
        load_test.run(args)


def test_a_load_test_that_stops_is_one_line_in_both_entry_points(capsys, monkeypatch):
    def stops(*_a, **_k):
        raise TimeoutError("no answer to the warm-up stream")

    monkeypatch.setattr(load_test, "run_load_test", stops)
    assert load_test.main(["--duration", "1"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        "load_test: error: the load test stopped: no answer to the warm-up stream")
    code, err = run_cli(capsys, "load-test", "--duration", "1")
    assert code == 2
    assert one_error_line(err) == "irstd load-test: error: the load test stopped: no answer to the warm-up stream"


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (IsADirectoryError(21, "Is a directory", "logs"), 1, "load_test: error: [Errno 21] Is a directory: 'logs'"),
        (KeyboardInterrupt(), 130, "load_test: interrupted"),
    ],
)
def test_python_m_load_test_file_problems_and_ctrl_c_are_one_line(raised, code, line, capsys, monkeypatch):
    """``--log`` naming a folder (the node's log cannot be opened) and Ctrl-C: one line from
    ``python -m irstd_ros.tools.load_test`` as from ``irstd load-test``, not a traceback."""
    def fails(*_a, **_k):
        raise raised

    monkeypatch.setattr(load_test, "run_load_test", fails)
    try:
        assert load_test.main(["--duration", "1", "--log", "logs"]) == code
    except (OSError, KeyboardInterrupt) as exc:
        pytest.fail(f"{type(exc).__name__} escaped as a traceback")
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == line and "Traceback" not in err


def _result(processed: int) -> dict:
    """A load test result as run_load_test returns it, with the node's last /diagnostics."""
    final = {**{f"{s}_p50_ms": "1.0" for s in load_test.STAGES},
             "latency_p50_ms": "470.0", "latency_p99_ms": "2360.5", "infer_p50_ms": "393.5"}
    return {
        "config": {"size": "640x512", "encoding": "mono16", "rate_hz": 30.0, "duration_s": 8.0,
                   "reliability": "reliable", "node_qos_depth": "5", "backend": "torch-cpu"},
        "machine": {"cpu": "cpu", "cores": 2, "rmw": "rmw", "dds_env": {}, "loadavg_start": [1.0]},
        "sent": processed, "elapsed_s": processed / 30.0, "sent_hz": 30.0, "received_at_node": processed,
        "not_received_by_node": 0,
        "processed": processed, "dropped_superseded": 0, "dropped_stale": 0, "refused": 0,
        "in_flight_at_end": 0, "answered": processed, "answered_hz": 2.6, "answers_lost": 0,
        "latency_ms": {"p50": 470.0, "p99": 874.0, "max": 874.0, "p50_first_third": 528.0,
                       "p50_last_third": 466.0},
        **load_test.node_window(final, processed),
        "node_cpu_cores": 1.3,
        "rss_mib": {"after_warmup": 508.0, "end": 508.0, "max": 568.0, "growth_pct": 1.0},
        "exit_code": 0, "exit_s": 1.0, "checks": {"accounting": True},
    }


def test_the_nodes_own_percentiles_say_when_they_still_hold_the_warm_up():
    """The node's percentiles are over its last LATENCY_WINDOW frames: in a short run they
    include the warm-up's first inference (an 8 s run: node p99 2360 ms, the run's 874)."""
    from irstd_ros.ros.health import LATENCY_WINDOW

    short = _result(21)
    assert short["node_window_includes_warmup"] is True
    assert short["node_latency_ms"] == {"p50": 470.0, "p99": 2360.5}
    assert short["infer_p50_ms"] == 393.5
    report = load_test.format_report(short)
    assert "| node inference p50 (its last frames, warm-up included) (ms) | 394 |" in report
    long = _result(LATENCY_WINDOW)
    assert long["node_window_includes_warmup"] is False
    assert "| node inference p50 (ms) | 394 |" in load_test.format_report(long)


def test_figures_the_node_did_not_measure_are_undefined_not_zero():
    # the node prints NOT_MEASURED for a percentile with no samples (no live stamps)
    final = {"latency_p50_ms": "n/a", "latency_p99_ms": "n/a", "infer_p50_ms": "12.5"}
    window = load_test.node_window(final, 3)
    assert math.isnan(window["node_latency_ms"]["p50"]) and math.isnan(window["node_latency_ms"]["p99"])
    assert window["infer_p50_ms"] == 12.5
    assert all(math.isnan(v) for s, v in window["node_stages_p50_ms"].items() if s != "infer")  # absent


def test_frames_the_node_may_still_hold_are_its_queue_and_the_one_in_work():
    """The allowance was a fixed 2 although the default queue holds 2 (so 3 in flight) and
    --param input.queue_size:=N holds N."""
    from irstd_ros.tools.load_test import accounting_closes

    assert accounting_closes(3, settled=False, queue_size=2, received=10, sent=10)
    assert accounting_closes(6, settled=False, queue_size=5, received=10, sent=10)
    assert not accounting_closes(4, settled=False, queue_size=2, received=10, sent=10)
    assert not accounting_closes(1, settled=True, queue_size=2, received=10, sent=10)
    assert not accounting_closes(0, settled=True, queue_size=2, received=11, sent=10)


def test_stream_notices_are_not_frames_lost():
    """size_changed, stamp_backwards, camera_info... are counted beside a frame that was
    processed: added to the failed frames they made the accounting go negative."""
    from irstd_ros.tools.load_test import _errors

    final = {"errors.inference_error": "2", "errors.size_changed": "5", "errors.camera_info_mismatch": "7",
             "errors.stamp_backwards": "1", "received": "100"}
    assert _errors(final) == 2


def test_rss_trend_is_the_fitted_relative_growth_not_the_last_sample():
    """A steady leak of 1 MiB a second on 100 MiB over 10 s is 10 %; RSS swinging by
    +-5 MiB (one inference's buffers) around a flat level is no leak, though its first and
    last samples differ by 10 %; too few samples give no figure."""
    leak = [(float(t), 100.0 + t) for t in range(11)]
    assert load_test.rss_trend(leak) == pytest.approx(0.1)
    swings = [(float(t), 100.0 + (5.0 if t % 2 == 0 else -5.0)) for t in range(10)]
    assert abs(load_test.rss_trend(swings)) < 0.05
    assert load_test.rss_trend(leak[: load_test.MIN_RSS_SAMPLES - 1]) is None
    assert load_test.rss_trend(leak[: load_test.MIN_RSS_SAMPLES]) == pytest.approx(0.04)


class _NoNode:
    """Stands in for the node process (the test stops at ``rclpy.init``)."""

    killed = False

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.proc = None

    def stop(self, sig: int, timeout: float) -> int:
        return 0

    def log_text(self) -> str:
        return ""


@pytest.mark.ros
def test_rclpy_does_not_read_the_command_line(monkeypatch, tmp_path):
    """rclpy.init() read sys.argv: a FROM:=TO on the command line became a process-wide
    rcl remap rule (with a deprecation warning), renaming the camera's topics."""
    from _support.ros_args import REMAP_FROM, InitProbed, probe_rclpy_init

    names = probe_rclpy_init(monkeypatch)
    monkeypatch.setattr(load_test, "NodeProcess", _NoNode)
    monkeypatch.setattr(load_test, "node_executable", lambda: ["irstd_node"])
    with pytest.raises(InitProbed):
        load_test.run_load_test(size=(8, 8), log_path=tmp_path / "node.log")
    assert names == [REMAP_FROM]



def test_ctrl_c_or_sigterm_shutting_rclpy_down_is_no_thread_traceback():
    """rclpy's signal handlers shut the context down on Ctrl-C / SIGTERM: the camera's spin
    thread ends quietly (the main thread prints the one line), no 'Exception in thread'."""
    import threading
    from types import SimpleNamespace

    from rclpy.executors import ExternalShutdownException

    class ShutDown:
        def spin_once(self, timeout_sec: float) -> None:
            raise ExternalShutdownException()

    load_test.Peer._spin(SimpleNamespace(_stop=threading.Event(), executor=ShutDown()))  # returns


def test_memory_is_not_judged_on_a_run_shorter_than_the_warm_up():
    """``irstd load-test --duration 5`` exited 1 with 'memory_flat FAILED': no RSS sample
    came after the 10 s warm-up, so no trend, and no trend read as a leak."""
    assert load_test.memory_check(None, 0, 5.0, 10.0) == (
        None, f"run shorter than warm-up + {load_test.MIN_RSS_SAMPLES} s (5 s run, 10 s warm-up)")
    # long enough, but RSS unreadable: not shown flat, so failed (it passed as not judged)
    why = f"2 RSS samples after the warm-up, {load_test.MIN_RSS_SAMPLES} needed"
    assert load_test.memory_check(None, 2, 40.0, 10.0) == (False, why)
    assert load_test.format_checks({"memory_flat": False}, {}, {"memory_flat": why}) == f"memory_flat FAILED: {why}"
    assert load_test.memory_check(0.01, 20, 30.0, 10.0) == (True, None)
    assert load_test.memory_check(0.2, 20, 30.0, 10.0) == (False, None)


def test_a_check_not_judged_fails_nothing_and_the_report_says_why(capsys, monkeypatch):
    why = load_test.memory_check(None, 0, 5.0, 10.0)[1]
    checks = {"accounting": True, "latency_bounded": True, "memory_flat": None, "clean_exit": True}
    assert load_test.verdict(checks) is True
    assert load_test.verdict({**checks, "accounting": False}) is False
    result = {**_result(21), "checks": checks, "not_judged": {"memory_flat": why}, "ok": load_test.verdict(checks),
              "node_log": "/nonexistent/node.log"}
    report = load_test.format_report(result)
    assert report.splitlines()[-1] == (
        f"checks: accounting ok, latency_bounded ok, memory_flat not judged: {why}, clean_exit ok")

    monkeypatch.setattr(load_test, "run_load_test", lambda *_a, **_k: result)
    code, out, err = run_cli_output(capsys, "load-test", "--duration", "5")
    assert code == 0 and "memory_flat not judged: run shorter than warm-up" in out
    assert f"note: memory_flat will not be judged: --duration 5 s is shorter than --warmup 10 s + " \
           f"{load_test.MIN_RSS_SAMPLES} s" in err


def _camera(period: float, stall_at: float, stall: float, until: float) -> tuple[list[float], load_test.Pacing]:
    """The load test's send loop on a fake clock: sleeps of at most 2 ms, one of which
    returns ``stall`` s late (the process descheduled); each send takes 0.1 ms."""
    now = 0.0
    pacing, sends, stalled = load_test.Pacing(now, period), [], False
    while now < until:
        if not pacing.ready(now):
            now += min(pacing.due - now, 0.002)
            if not stalled and now > stall_at:
                stalled, now = True, now + stall
            continue
        sends.append(now)
        pacing.sent(now)
        now += 0.0001
    return sends, pacing


@pytest.mark.parametrize("stall", [0.1, 0.25, 0.5])
def test_a_stalled_camera_resumes_its_cadence_without_a_burst(stall):
    """After a 100-500 ms stall at 30 Hz the camera sent 3 frames 0.1 ms apart, and the
    node's queue of two (+ one in work) dropped one as superseded: a drop no real camera
    causes. Now the send after a stall restarts the cadence, one period to the next."""
    period = 1 / 30
    sends, pacing = _camera(period, stall_at=1.0, stall=stall, until=3.0)
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert min(gaps) >= period - 1e-9  # no two frames closer than a period
    assert pacing.late == 1
    assert pacing.max_gap == pytest.approx(max(gaps)) and pacing.max_gap >= stall
    summary = pacing.summary()
    assert summary["late_sends"] == 1 and summary["max_gap_ms"] == pytest.approx(1e3 * max(gaps))
    assert summary["period_ms"] == pytest.approx(1e3 * period)


def test_the_cadence_holds_when_a_send_is_late_by_less_than_a_period():
    period = 0.1
    assert load_test.next_due(1.0, 1.0, period) == (pytest.approx(1.1), False)  # on time
    assert load_test.next_due(1.0, 1.05, period) == (pytest.approx(1.1), False)  # a little late: kept
    assert load_test.next_due(1.0, 1.1, period) == (pytest.approx(1.2), True)  # a period: restarts
    assert load_test.next_due(1.0, 1.4, period) == (pytest.approx(1.5), True)
    sends, pacing = _camera(period, stall_at=10.0, stall=0.0, until=2.0)  # no stall
    assert pacing.late == 0 and len(sends) == 20
    assert pacing.max_gap == pytest.approx(period)


def _goal_result(**losses) -> dict:
    result = {**_result(100), "checks": {"accounting": True, "latency_bounded": True, "memory_flat": True,
                                         "clean_exit": True}, "failed": {}, "not_judged": {}}
    result.update(losses)
    result["ok"] = load_test.verdict(result["checks"])
    return result


def test_the_goals_are_checked_only_when_asked():
    """A run with 2700 frames superseded passed every check ('checks: all pass'): the
    issue's goals, zero drops and 30 FPS sustained, were not checked at all."""
    result = _goal_result(dropped_superseded=2700)
    load_test.apply_goals(result)
    assert result["ok"] and set(result["checks"]) == {"accounting", "latency_bounded", "memory_flat", "clean_exit"}
    assert result["config"]["expect_zero_drops"] is False and result["config"]["min_fps"] is None


def test_every_frame_lost_fails_expect_zero_drops_with_where_it_was_lost():
    result = load_test.apply_goals(
        _goal_result(not_received_by_node=3, dropped_superseded=2700, dropped_stale=1, refused=2, answers_lost=4),
        zero_drops=True)
    assert result["ok"] is False and result["checks"]["zero_drops"] is False
    assert result["failed"]["zero_drops"] == ("2710 frames lost: 3 not received by the node, 2700 superseded, "
                                              "1 stale, 2 refused, 4 answers lost")
    assert "zero_drops FAILED: 2710 frames lost: 3 not received" in load_test.format_report(result)
    clean = load_test.apply_goals(_goal_result(), zero_drops=True)
    assert clean["ok"] is True and clean["checks"]["zero_drops"] is True and "zero_drops" not in clean["failed"]


def test_min_fps_is_the_answer_rate():
    slow = load_test.apply_goals(_goal_result(answered_hz=29.4, sent_hz=30.0), min_fps=30.0)
    assert slow["ok"] is False
    assert slow["failed"]["min_fps"] == "answered 29.40 Hz < 30 Hz (camera sent 30.0 Hz)"
    fast = load_test.apply_goals(_goal_result(answered_hz=30.0, sent_hz=30.0), min_fps=30.0)
    assert fast["ok"] is True and fast["checks"]["min_fps"] is True
    # a goal met does not hide a check that failed
    failed = _goal_result(answered_hz=30.0)
    failed["checks"]["clean_exit"] = False
    assert load_test.apply_goals(failed, zero_drops=True, min_fps=30.0)["ok"] is False


def test_min_fps_passes_a_run_that_answered_every_frame_of_a_camera_at_that_rate():
    """A 10-minute soak at 30 Hz answered all 18000 frames and failed --min-fps 30 with
    'answered 30.00 Hz < 30 Hz': the run lasts a little over 18000 periods. One frame of
    slack over the run; a frame fewer than that still fails."""
    elapsed = 600.0001244
    every = _goal_result(sent=18000, answered=18000, elapsed_s=elapsed,
                         sent_hz=18000 / elapsed, answered_hz=18000 / elapsed)
    assert load_test.apply_goals(every, min_fps=30.0)["checks"]["min_fps"] is True
    short = _goal_result(sent=18000, answered=17998, elapsed_s=elapsed,
                         sent_hz=18000 / elapsed, answered_hz=17998 / elapsed)
    assert load_test.apply_goals(short, min_fps=30.0)["checks"]["min_fps"] is False


def test_a_goal_missed_fails_the_command_with_the_reason(capsys, monkeypatch):
    monkeypatch.setattr(load_test, "run_load_test",
                        lambda *_a, **_k: {**_goal_result(dropped_superseded=5), "node_log": "/nonexistent/node.log"})
    code, out, _ = run_cli_output(capsys, "load-test", "--duration", "20", "--expect-zero-drops", "--min-fps", "2")
    assert code == 1
    assert out.splitlines()[-1].endswith("zero_drops FAILED: 5 frames lost: 5 superseded, min_fps ok")
    code, out, _ = run_cli_output(capsys, "load-test", "--duration", "20")
    assert code == 0 and "zero_drops" not in out


def test_the_goal_options_are_in_the_help(capsys):
    _, out, _ = run_cli_output(capsys, "load-test", "--help")
    text = " ".join(out.split())
    assert "--expect-zero-drops" in text and "superseded by a newer one, stale, refused" in text
    assert "--min-fps HZ" in text and "answers (detections received) arrive at less than HZ" in text
    code, err = run_cli(capsys, "load-test", "--min-fps", "0")
    assert code == 2 and "argument --min-fps: must be > 0" in one_error_line(err)


def test_a_p99_of_fewer_than_100_answers_is_printed_as_their_max():
    short = _result(21)
    short["latency_ms"]["n"] = 21
    assert "| latency stamp -> answer p50 / p99 / max (ms) | 470 / max 874 (n=21) / 874 |" in (
        load_test.format_report(short))
    long = _result(300)
    long["latency_ms"]["n"] = 300
    assert "| 470 / 874 / 874 |" in load_test.format_report(long)


def test_the_json_says_null_where_the_node_measured_nothing(capsys, monkeypatch):
    """The node's 'n/a' became a bare NaN in --json: no JSON a strict parser reads."""
    window = load_test.node_window({"latency_p50_ms": "n/a", "infer_p50_ms": "12.5"}, 3)
    result = {**_goal_result(), **window, "node_cpu_cores": np.float64("nan"), "node_log": "/nonexistent/node.log"}
    monkeypatch.setattr(load_test, "run_load_test", lambda *_a, **_k: result)
    code, out, _ = run_cli_output(capsys, "load-test", "--duration", "20", "--json")

    def no_constant(name):
        raise AssertionError(f"{name} in the JSON")

    data = json.loads(out, parse_constant=no_constant)
    assert code == 0
    assert data["node_latency_ms"] == {"p50": None, "p99": None} and data["infer_p50_ms"] == 12.5
    assert data["node_cpu_cores"] is None and all(v is None for s, v in data["node_stages_p50_ms"].items() if s != "infer")
    assert json_safe({"a": (1.0, float("inf"), np.float32(2.5))}) == {"a": [1.0, None, 2.5]}
