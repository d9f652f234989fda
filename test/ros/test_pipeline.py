"""The pipeline's frame queue (``input.queue_size``): frames wait for the worker in
arrival order; a frame arriving at a full queue drops the oldest waiting one and counts
it; the newest frame is always processed."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import frame_for, image_msg, make_detector  # noqa: E402

from irstd_ros.ros.params import PARAMS  # noqa: E402
from irstd_ros.ros.pipeline import FramePipeline, Outputs  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT_S = 10.0


class Collect:
    def __init__(self) -> None:
        self.msgs: list = []

    def publish(self, msg) -> None:
        self.msgs.append(msg)


class Log:
    def warning(self, text: str) -> None:
        raise AssertionError(f"unexpected warning: {text}")

    info = error = warning


def pipeline(queue_size: int) -> tuple[FramePipeline, Collect]:
    params = {p.name: p.default for p in PARAMS} | {
        "input.queue_size": queue_size, "tracking.enabled": False,
    }
    detections = Collect()
    outputs = Outputs(mask=Collect(), detections=detections, targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=Collect())
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: 0)
    return pipe, detections


def run_until_idle(pipe: FramePipeline, processed: int) -> None:
    import time

    pipe.start()
    end = time.monotonic() + TIMEOUT_S
    while pipe.stats.processed < processed and time.monotonic() < end:
        time.sleep(0.01)
    pipe.stop()


@pytest.mark.parametrize(("queue_size", "kept"), [(1, [5]), (2, [4, 5]), (3, [3, 4, 5])])
def test_a_full_queue_drops_the_oldest_waiting_frame(queue_size, kept):
    pipe, detections = pipeline(queue_size)
    for stamp in range(1, 6):  # five frames arrive while the worker is busy (not started)
        pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=stamp))
    assert pipe.stats.received == 5
    assert pipe.stats.dropped == 5 - len(kept)
    run_until_idle(pipe, len(kept))
    assert [m.header.stamp.sec for m in detections.msgs] == kept
    assert pipe.stats.processed == len(kept)


def test_a_queue_within_its_size_loses_nothing():
    pipe, detections = pipeline(2)
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=1))
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=2))
    run_until_idle(pipe, 2)
    assert pipe.stats.dropped == 0
    assert [m.header.stamp.sec for m in detections.msgs] == [1, 2]


def test_discarding_empties_the_queue():
    pipe, detections = pipeline(3)
    for stamp in (1, 2):
        pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=stamp))
    pipe.discard_pending()
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=3))
    run_until_idle(pipe, 1)
    assert [m.header.stamp.sec for m in detections.msgs] == [3]
