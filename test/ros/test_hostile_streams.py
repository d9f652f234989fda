"""The node under hostile input streams (real rclpy, in process, :class:`IntensityBackend`):
every malformed frame is refused with a named kind, logged once per kind (rate-limited),
counted, and never stops the next valid frame being answered; /diagnostics carries it all.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import frame_for, image_msg, logged_harness, make_detector  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from irstd_ros.ros.conversions import array_to_image_fields  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402

pytestmark = pytest.mark.ros
REPEATS = 3  # each bad frame is sent this often: counted each time, logged once
CALM_PERIOD_S = 0.05  # "calm rate": 20 Hz
VALID_FRAMES = 20
GIB = 1 << 30


@pytest.fixture
def hostile(rclpy_context):
    """(harness, log capture) around a node with the deterministic test backend."""
    made = []

    def make(*overrides: Parameter):
        node = IrstdNode(detector=make_detector(), parameter_overrides=list(overrides))
        h, log = logged_harness(node)
        made.append(h)
        return h, log

    yield make
    for h in made:
        h.close()


def good(stamp: int) -> Image:
    return image_msg(frame_for("mono8"), "mono8", stamp=stamp)


def with_fields(msg: Image, **fields) -> Image:
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def float_frame(value: float) -> Image:
    f = frame_for("32FC1")
    f[3, 4] = value
    return image_msg(f, "32FC1")


BAD_FRAMES = {
    "unknown_encoding": lambda: with_fields(good(1), encoding="yuv422"),
    "unknown_encoding_empty_name": lambda: with_fields(good(1), encoding=""),
    "unknown_encoding_case": lambda: with_fields(good(1), encoding="MONO8"),
    "empty_image_0x0": lambda: with_fields(good(1), height=0, width=0, step=0, data=b""),
    "empty_image_0xN": lambda: with_fields(good(1), height=0, data=b""),
    "size_mismatch_short": lambda: with_fields(good(1), data=bytes(47 * 64)),
    "size_mismatch_long": lambda: with_fields(good(1), data=bytes(49 * 64)),
    "size_mismatch_empty": lambda: with_fields(good(1), data=b""),
    "bad_step": lambda: with_fields(good(1), step=63),
    "non_finite_nan": lambda: float_frame(np.nan),
    "non_finite_inf": lambda: float_frame(np.inf),
    "non_finite_minus_inf": lambda: float_frame(-np.inf),
    "too_large": lambda: with_fields(good(1), height=5000, width=5000, step=5000),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_is_logged_once_counted_and_the_next_valid_frame_answered(hostile, case):
    kind = next(k for k in ("unknown_encoding", "empty_image", "size_mismatch", "bad_step",
                            "non_finite", "too_large") if case.startswith(k))
    h, log = hostile()
    for i in range(REPEATS):
        h.send(BAD_FRAMES[case]())
        h.spin_until(lambda i=i: h.node.stats.errors[kind] == i + 1)
    assert log.warnings(kind) == 1  # rate-limited: one line per kind and period
    h.send(good(7), expect_answers=1)
    assert h.got["detections"][-1].header.stamp.sec == 7
    assert dict(h.node.stats.errors) == {kind: REPEATS}
    assert h.node.stats.processed == 1


def test_declared_size_beyond_max_pixels_is_refused_before_allocation(hostile):
    """Declares 100000 rows x step 120000 bytes = 12 GB, with 16 bytes of data."""
    h, _ = hostile()
    msg = with_fields(good(1), height=100_000, width=100_000, step=120_000, data=bytes(16))
    assert msg.height * msg.step > 10 * 10**9
    h.send(msg)
    h.spin_until(lambda: h.node.stats.errors["too_large"] == 1)
    peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    assert peak_bytes < 4 * GIB, "something allocated the declared size"
    h.send(good(2), expect_answers=1)
    assert h.node.stats.errors.keys() == {"too_large"}


def test_tiny_valid_frames_are_answered(hostile):
    h, _ = hostile()
    one = image_msg(np.array([[255]], np.uint8), "mono8", stamp=1)
    h.send(one, expect_answers=1)
    h.spin_until(lambda: h.got["mask"])
    mask = h.got["mask"][-1]
    assert (mask.height, mask.width, list(mask.data)) == (1, 1, [255])
    h.send(image_msg(np.zeros((1, 7), np.uint16), "mono16", stamp=2), expect_answers=1)
    assert dict(h.node.stats.errors) == {"size_changed": 1}  # reported, still answered


def test_padded_rows_and_big_endian_frames_are_answered_correctly(hostile):
    h, _ = hostile()
    frame = frame_for("mono16")
    fields = array_to_image_fields(frame, "mono16")
    rows = np.frombuffer(fields["data"], np.uint8).reshape(frame.shape[0], -1)
    padded = np.pad(rows, ((0, 0), (0, 6)), constant_values=0xFF)  # padding would be "hot"
    msg = with_fields(image_msg(frame, "mono16", stamp=1), step=padded.shape[1],
                      data=padded.tobytes())
    h.send(msg, expect_answers=1)
    big = frame.astype(">u2")
    msg = with_fields(image_msg(frame, "mono16", stamp=2), is_bigendian=1, data=big.tobytes())
    h.send(msg, expect_answers=1)
    assert [len(d.detections) for d in h.got["detections"]] == [2, 2]
    assert not h.node.stats.errors


def test_size_change_and_stamps_going_back_are_reported_and_still_answered(hostile):
    h, log = hostile()
    h.send(good(10), expect_answers=1)
    small = image_msg(np.zeros((16, 24), np.uint8), "mono8", stamp=11)
    h.send(small, expect_answers=1)
    h.spin_until(lambda: len(h.got["mask"]) == 2)
    assert (h.got["mask"][-1].height, h.got["mask"][-1].width) == (16, 24)
    assert h.node.stats.errors["size_changed"] == 1
    back = image_msg(np.zeros((16, 24), np.uint8), "mono8", stamp=10)
    back.header.stamp.nanosec = 600_000_000  # 0.4 s back (over 1 s: a stream restart)
    h.send(back, expect_answers=1)
    assert h.node.stats.errors["stamp_backwards"] == 1
    h.send(good(12), expect_answers=1)
    assert h.node.stats.errors["size_changed"] == 2
    assert [d.header.stamp.sec for d in h.got["detections"]] == [10, 11, 10, 12]
    assert log.warnings("size_changed") == 1 and log.warnings("stamp_backwards") == 1
    assert h.node.stats.restarts == 0


def test_every_valid_frame_between_malformed_ones_is_answered(hostile):
    """A calm stream (20 Hz) of valid frames, each followed by a malformed one."""
    h, _ = hostile()
    bad_cases = sorted(BAD_FRAMES)
    for i in range(VALID_FRAMES):
        h.send(good(100 + i))
        end = time.monotonic() + CALM_PERIOD_S
        while time.monotonic() < end:
            h.executor.spin_once(timeout_sec=0.005)
        h.send(BAD_FRAMES[bad_cases[i % len(bad_cases)]]())
        end = time.monotonic() + CALM_PERIOD_S
        while time.monotonic() < end:
            h.executor.spin_once(timeout_sec=0.005)
    h.spin_until(lambda: h.node.stats.received == 2 * VALID_FRAMES)
    h.spin_until(lambda: len(h.got["detections"]) >= VALID_FRAMES)
    assert [d.header.stamp.sec for d in h.got["detections"]] == list(range(100, 100 + VALID_FRAMES))
    stats = h.node.stats
    assert stats.processed == VALID_FRAMES and stats.dropped == 0
    assert sum(stats.errors.values()) == VALID_FRAMES


def test_diagnostics_topic_carries_rates_latency_drops_errors_and_backend(hostile):
    h, _ = hostile(Parameter("diagnostics.period", value=0.2))
    got: list[DiagnosticArray] = []
    h.peer.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    h.send(good(1), expect_answers=1)
    h.send(with_fields(good(2), encoding="yuv422"))
    h.spin_until(lambda: h.node.stats.errors["unknown_encoding"] == 1)

    def latest() -> dict[str, str]:
        return {kv.key: kv.value for kv in got[-1].status[0].values} if got else {}

    h.spin_until(lambda: latest().get("errors.unknown_encoding") == "1")
    values = latest()
    for key in ("backend", "received", "processed", "dropped", "input_hz", "output_hz",
                "latency_p50_ms", "latency_p99_ms", "infer_p50_ms"):
        assert key in values, key
    assert values["backend"] == "intensity"
    assert (values["queue_size"], values["qos_depth"]) == ("2", "5")  # the node's two queues
    assert (values["received"], values["processed"], values["dropped"]) == ("2", "1", "0")
    # a stamp of 1 s (1970) is no live stamp: no latency, and none made up
    assert values["latency_p50_ms"] == values["latency_p99_ms"] == "n/a"
    assert float(values["infer_p50_ms"]) > 0.0
    status = got[-1].status[0]
    assert status.level == status.WARN and status.hardware_id == "cpu"
    assert h.node.get_fully_qualified_name() in status.name
