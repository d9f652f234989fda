"""render: a decodable video with one frame per bag frame, and a contact sheet."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from _support.bags import TINY
from _support.cli import one_error_line, run_cli

from irstd_ros.bags.io import (
    IMAGE_TOPIC,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagReader,
    BagWriter,
    Box,
    detections_msg,
    image_msg,
    targets_msg,
)
from irstd_ros.bags.render import RenderConfig, contact_sheet, render
from irstd_ros.core.components import components
from irstd_ros.core.stamps import stamp_ns
from irstd_ros.errors import BagError, ConfigError


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_one_frame_per_bag_frame(tiny_bag, tmp_path, suffix):
    out = tmp_path / f"v{suffix}"
    s = render(
        RenderConfig(tiny_bag, out, sheet=tmp_path / "sheet.png", sheet_frames=4, sheet_columns=2)
    )
    assert s.video == out and s.frames == TINY.frames
    frames = list(iio.imiter(out))
    assert len(frames) == TINY.frames
    assert frames[0].shape[:2] == (TINY.height, TINY.width)
    sheet = iio.imread(tmp_path / "sheet.png")
    assert sheet.shape[0] > TINY.height and sheet.shape[1] > TINY.width and sheet.shape[2] == 3


def test_truth_boxes_are_drawn_in_green(tiny_bag, tmp_path):
    out = tmp_path / "v.gif"
    render(RenderConfig(tiny_bag, out, max_frames=3))
    frames = list(iio.imiter(out))
    assert len(frames) == 3
    green = (frames[1][..., 1] > 180) & (frames[1][..., 0] < 120)
    assert green.any()


def test_outputs_bag_without_detections_is_refused(tiny_bag, tmp_path):
    with pytest.raises(BagError, match="no targets or detections"):
        render(RenderConfig(tiny_bag, tmp_path / "v.gif", outputs=tiny_bag))


def test_unknown_video_format_is_refused(tiny_bag, tmp_path):
    with pytest.raises(ConfigError):
        render(RenderConfig(tiny_bag, tmp_path / "v.avi"))


def test_contact_sheet_tiles_row_by_row():
    frames = [np.full((4, 5, 3), i * 40, np.uint8) for i in range(5)]
    sheet = contact_sheet(frames, columns=3)
    gap = 4
    assert sheet.shape == (2 * 4 + gap, 3 * 5 + 2 * gap, 3)
    assert sheet[0, 0, 0] == 0 and sheet[0, 5 + gap, 0] == 40 and sheet[4 + gap, 0, 0] == 120


@pytest.fixture
def unraisable(monkeypatch):
    """Exceptions raised in finalisers ("Exception ignored in ... __del__")."""
    seen: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(f"{u.exc_type.__name__} in {u.object!r}"))
    return seen


def test_a_video_that_cannot_be_written_fails_once_and_cleanly(tiny_bag, tmp_path, unraisable):
    out = tmp_path / "v.gif"
    out.mkdir()  # the GIF cannot be opened: only known when it is written
    try:
        render(RenderConfig(tiny_bag, out))
    except IsADirectoryError as exc:
        assert str(out) in (exc.filename, exc.filename2)
    else:
        raise AssertionError("no error")
    gc.collect()
    assert unraisable == []  # no writer left to retry the close in its finaliser
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif"]  # no partial video left


def test_a_failure_while_drawing_is_the_error_reported(tiny_bag, tmp_path, monkeypatch, unraisable):
    from irstd_ros.bags import render as render_module

    draw = render_module.draw_overlay
    calls = []

    def boom_on_the_fourth(*args, **kwargs):  # three frames are in the writer by then
        calls.append(1)
        if len(calls) % 4 == 0:
            raise RuntimeError("boom")
        return draw(*args, **kwargs)

    monkeypatch.setattr(render_module, "draw_overlay", boom_on_the_fourth)
    (tmp_path / "old.gif").write_bytes(b"an earlier render")
    for name in ("v.gif", "v.mp4", "old.gif"):
        with pytest.raises(RuntimeError, match="boom"):
            render(RenderConfig(tiny_bag, tmp_path / name))
    gc.collect()
    assert unraisable == []
    # no truncated video, no partial file; an earlier video at the path is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.gif"]
    assert (tmp_path / "old.gif").read_bytes() == b"an earlier render"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
@pytest.mark.parametrize("option", ["--out", "--sheet"])
def test_cli_output_under_proc_is_one_line_before_the_work(option, tiny_bag, tmp_path, capsys, monkeypatch):
    from irstd_ros.bags import render as render_module

    def no_reading(*_args, **_kwargs):
        raise AssertionError("the bag was read before the outputs were checked")

    monkeypatch.setattr(render_module, "BagReader", no_reading)
    paths = {"--out": str(tmp_path / "v.gif"), "--sheet": str(tmp_path / "s.png")}
    paths[option] = "/proc/irstd-x" + Path(paths[option]).suffix
    code, err = run_cli(capsys, "render", str(tiny_bag), "--out", paths["--out"], "--sheet", paths["--sheet"])
    assert code == 2
    assert one_error_line(err) == (
        f"irstd render: error: {option} {paths[option]} cannot be created: directory /proc is not writable"
    )
    assert "Exception ignored" not in err and list(tmp_path.iterdir()) == []


def write_partly_truthed_bag(path: Path) -> Path:
    """10 frames of grey level 20 * i; truth recorded from frame 5 on, a target in frame 7."""
    with BagWriter(path) as w:
        for i in range(10):
            s = 10**12 + i * 10**8
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.full((24, 32), 20 * i, np.uint8), "mono8", s, "cam"))
            if i >= 5:
                boxes = [Box(10, 10, 3, 3, id="1")] if i == 7 else []
                w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, boxes, s, "cam"))
    return path


def test_sheet_frames_with_targets_are_found_by_image_stamp(tmp_path):
    """The frames with truth targets were counted on the truth topic: with truth from
    frame 5 on, the target of frame 7 picked frame 2 (grey level 40)."""
    bag = write_partly_truthed_bag(tmp_path / "bag")
    render(RenderConfig(bag, tmp_path / "v.gif", sheet=tmp_path / "s.png", sheet_frames=1, sheet_columns=1))
    assert iio.imread(tmp_path / "s.png")[-1, -1].tolist() == [140, 140, 140]  # frame 7


def test_a_sheet_that_fails_to_write_leaves_the_old_one(tiny_bag, tmp_path, monkeypatch):
    """The sheet was written in place: a write failing half-way left half a PNG."""
    sheet = tmp_path / "s.png"
    sheet.write_bytes(b"an earlier sheet")
    write_bytes = Path.write_bytes

    def disk_full(self: Path, data: bytes) -> int:
        if self.suffix != ".png":
            return write_bytes(self, data)
        write_bytes(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space"):
        render(RenderConfig(tiny_bag, tmp_path / "v.gif", sheet=sheet))
    assert sheet.read_bytes() == b"an earlier sheet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "v.gif"]


@pytest.mark.parametrize(("suffix", "fps"), [(".gif", 1e-6), (".mp4", 1e-6), (".mp4", 1e12)])
def test_a_frame_rate_no_encoder_can_write_is_refused(tiny_bag, tmp_path, suffix, fps):
    """It was an OverflowError traceback (GIF), a broken 261-byte MP4 (1e-6), or "wrote
    v.mp4" with no file at all (1e12: ffmpeg failed, its error unseen)."""
    with pytest.raises(ConfigError, match="frame rate must be in"):
        render(RenderConfig(tiny_bag, tmp_path / f"v{suffix}", fps=fps))
    assert list(tmp_path.iterdir()) == []


def test_a_bags_own_rate_is_clamped_to_one_the_encoders_write(tmp_path):
    """Two frames 1000 s apart: 0.001 fps, a GIF frame longer than the format holds (it was
    an OverflowError traceback from the GIF encoder)."""
    bag = tmp_path / "slow"
    with BagWriter(bag) as w:
        for i in range(2):
            s = 10**12 + i * 1000 * 10**9
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.full((24, 32), 50 * i, np.uint8), "mono8", s, "cam"))
    s = render(RenderConfig(bag, tmp_path / "v.gif"))
    assert s.frames == 2 and len(list(iio.imiter(tmp_path / "v.gif"))) == 2


def test_a_scale_too_large_for_a_video_is_refused_cleanly(tiny_bag, tmp_path):
    """It was a numpy MemoryError traceback (112 TiB for --scale 100000)."""
    with pytest.raises(ConfigError, match="at most 8192 px a side"):
        render(RenderConfig(tiny_bag, tmp_path / "v.gif", scale=100_000))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sheet", ["v.mp4", "s.jpg"])
def test_a_sheet_over_the_video_or_not_a_png_is_refused(tiny_bag, tmp_path, sheet):
    """--sheet v.mp4 --out v.mp4 replaced the video by the sheet and reported both written;
    --sheet s.jpg wrote PNG bytes under a .jpg name."""
    with pytest.raises(ConfigError, match="must end in .png"):
        render(RenderConfig(tiny_bag, tmp_path / "v.mp4", sheet=tmp_path / sheet))
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_that_writes_no_file_is_an_error(tiny_bag, tmp_path, monkeypatch):
    from irstd_ros.bags import render as render_module

    class Silent:  # as imageio-ffmpeg when ffmpeg refuses its input: no file, no exception
        def append_data(self, img: np.ndarray) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(render_module, "_video_writer", lambda path, fps: (Silent(), path))
    with pytest.raises(BagError, match="wrote no v.mp4"):
        render(RenderConfig(tiny_bag, tmp_path / "v.mp4"))


def test_the_bags_rate_is_the_image_topics_own(tmp_path):
    """A status topic over 10 s and the camera at 10 fps for its last 2 s: the rate was
    taken over the whole bag's duration (1.9 fps, a video five times too slow)."""
    bag = tmp_path / "late_camera"
    with BagWriter(bag) as w:
        status = w.store.types["std_msgs/msg/String"]
        for i in range(11):
            w.write("/status", i * 10**9, status(data="ok"))
        for i in range(20):
            s = 8 * 10**9 + i * 10**8
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.zeros((24, 32), np.uint8), "mono8", s, "cam"))
    render(RenderConfig(bag, tmp_path / "v.gif"))
    assert iio.immeta(tmp_path / "v.gif")["duration"] == pytest.approx(100, abs=1)  # ms a frame


def test_an_undecodable_compressed_image_topic_is_one_error_line(tmp_path, capsys):
    """A sensor_msgs/CompressedImage topic was an AttributeError traceback ('encoding'), then
    refused by type; now decoded (test_compressed_input.py), and data that is no PNG is one
    line naming the topic and the frame."""
    bag = tmp_path / "compressed"
    with BagWriter(bag) as w:
        compressed = w.store.types["sensor_msgs/msg/CompressedImage"]
        header = image_msg(w.store, np.zeros((2, 2), np.uint8), "mono8", 10**9, "cam").header
        w.write(IMAGE_TOPIC, 10**9, compressed(header=header, format="png", data=np.zeros(8, np.uint8)))
    code, err = run_cli(capsys, "render", str(bag), "--out", str(tmp_path / "v.gif"))
    assert code == 2
    line = one_error_line(err)
    assert f"{IMAGE_TOPIC} at stamp {10**9}" in line and "no readable PNG image" in line
    assert not (tmp_path / "v.gif").exists()


def _two_nodes_bag(path: Path) -> Path:
    """Frames and the detections of two cameras' nodes: cam1's finds a box, cam2's nothing."""
    with BagWriter(path) as w:
        for i in range(3):
            s = 10**9 + i * 10**8
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.full((32, 40), 60, np.uint8), "mono8", s, "cam"))
            w.write("/cam1/irstd/detections", s, detections_msg(w.store, [Box(10, 10, 6, 6)], s, "cam"))
            w.write("/cam2/irstd/detections", s, detections_msg(w.store, [], s, "cam"))
    return path


def test_outputs_of_several_nodes_are_one_error_line_naming_them(tmp_path, capsys):
    """Two nodes' detections in the bag: the first by name was drawn, without a word."""
    bag = _two_nodes_bag(tmp_path / "two_nodes")
    code, err = run_cli(capsys, "render", str(bag), "--out", str(tmp_path / "v.gif"))
    assert code == 2
    line = one_error_line(err)
    assert "several nodes" in line and "/cam2/irstd/detections" in line and "--outputs-ns" in line
    assert not (tmp_path / "v.gif").exists()


@pytest.mark.parametrize(("namespace", "drawn"), [("/cam1/irstd", True), ("/cam2/irstd", False)])
def test_outputs_ns_chooses_the_node_drawn(tmp_path, capsys, namespace, drawn):
    bag = _two_nodes_bag(tmp_path / "two_nodes")
    out = tmp_path / "v.gif"
    code, _ = run_cli(capsys, "render", str(bag), "--out", str(out), "--outputs-ns", namespace)
    assert code == 0
    frame = list(iio.imiter(out))[1]
    red = (frame[..., 0] > 180) & (frame[..., 1] < 120)
    assert red.any() == drawn


def _outputs_bag(path: Path, frames: Path, size: tuple[int, int]) -> Path:
    """Recorded node outputs for the frames of bag ``frames``, by their stamps: a ``/mask`` of
    ``size`` (H, W) and one detection each."""
    with BagReader(frames) as reader:
        stamps = sorted(reader.by_stamp(IMAGE_TOPIC, lambda _m, t: t).items())
    with BagWriter(path) as w:
        for s, t in stamps:
            w.write("/mask", t, image_msg(w.store, np.zeros(size, np.uint8), "mono8", s, "cam"))
            w.write("/detections", t, detections_msg(w.store, [Box(10, 10, 6, 6)], s, "cam"))
    return path


@pytest.mark.parametrize(("size", "refused"), [((TINY.height, TINY.width), False), ((48, 64), True)])
def test_outputs_of_another_frame_size_are_refused_as_eval_bag_refuses(size, refused, tiny_bag, tmp_path, capsys):
    """`render BAG --outputs OTHER` drew the outputs of another sequence without a word;
    eval-bag refused the pair: one check, the same line."""
    outputs = _outputs_bag(tmp_path / "outputs", tiny_bag, size)
    out = tmp_path / "v.gif"
    code, err = run_cli(capsys, "render", str(tiny_bag), "--outputs", str(outputs), "--out", str(out))
    if not refused:
        assert code == 0 and out.is_file()
        return
    assert code == 2 and not out.exists()
    line = one_error_line(err)
    assert f"the output mask (/mask in {outputs}) is 64x48 but the frame ({IMAGE_TOPIC} in {tiny_bag}) is 96x64" in line
    assert line.endswith("; outputs of another sequence?")
    code, err = run_cli(capsys, "eval-bag", "--truth", str(tiny_bag), "--outputs", str(outputs), "--no-tracking")
    assert code == 2 and "is 64x48 but the truth" in one_error_line(err)


def _frames_bag(path: Path, sizes: list[tuple[int, int]], step_ns: int = 10**8) -> Path:
    """Frames of ``sizes`` (H, W), one each, 0.1 s apart from 1 s."""
    with BagWriter(path) as w:
        for i, size in enumerate(sizes):
            s = 10**9 + i * step_ns
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.full(size, 60, np.uint8), "mono8", s, "cam"))
    return path


def _detections_bag(path: Path, stamps: list[int], topic: str = "/detections") -> Path:
    with BagWriter(path) as w:
        for s in stamps:
            w.write(topic, s, detections_msg(w.store, [Box(10, 10, 6, 6)], s, "cam"))
    return path


FRAME_STAMPS = [10**9 + i * 10**8 for i in range(6)]


@pytest.mark.parametrize(
    ("shift_ns", "first", "max_frames", "shown"),
    [(1, 0, None, ""), (0, 4, 3, " (the first 3)")],  # stamps 1 ns off; frames 4 on, 3 drawn
)
def test_outputs_of_no_rendered_frame_are_refused_as_eval_bag_refuses(
    tiny_bag, tmp_path, capsys, shift_ns, first, max_frames, shown
):
    """`render BAG --outputs OTHER` with no output stamp of a frame wrote "wrote v.gif (8
    frames)" with nothing drawn; eval-bag refused the pair: now both refuse it."""
    with BagReader(tiny_bag) as reader:
        stamps = sorted(reader.by_stamp(IMAGE_TOPIC, lambda _m, _t: None))
    outputs = _detections_bag(tmp_path / "outputs", [s + shift_ns for s in stamps[first:]])
    out = tmp_path / "v.gif"
    extra = [] if max_frames is None else ["--max-frames", str(max_frames)]
    args = ("render", str(tiny_bag), "--outputs", str(outputs), "--out", str(out), *extra)
    code, err = run_cli(capsys, *args)
    assert code == 2 and not out.exists()
    assert one_error_line(err).endswith(
        f"no output of {outputs} matches a frame of {IMAGE_TOPIC} in {tiny_bag}{shown} by header stamp; "
        "wrong bags?"
    )
    if max_frames is None:
        args = ("eval-bag", "--truth", str(tiny_bag), "--outputs", str(outputs), "--no-tracking")
        code, err = run_cli(capsys, *args)
        assert code == 2
        assert one_error_line(err).endswith("no output matches a truth frame by header stamp; wrong bags?")


def _recorded_labels(monkeypatch) -> list[str]:
    """The caption of every frame render draws, in order (draw_overlay wrapped)."""
    from irstd_ros.bags import render as render_module

    labels: list[str] = []
    draw = render_module.draw_overlay

    def record_label(*args, **kwargs):
        labels.append(kwargs["label"])
        return draw(*args, **kwargs)

    monkeypatch.setattr(render_module, "draw_overlay", record_label)
    return labels


def test_frames_without_an_output_message_are_labelled_so_and_counted(tmp_path, monkeypatch, caplog):
    """Frames the recorder has no /detections (nor /tracks) message of were labelled "DET 0":
    the node had found nothing there. Now "DET -", and a warning with their count."""
    labels = _recorded_labels(monkeypatch)
    bag = _frames_bag(tmp_path / "bag", [(32, 40)] * len(FRAME_STAMPS))
    outputs = _detections_bag(tmp_path / "outputs", FRAME_STAMPS[2:])
    with BagWriter(outputs, overwrite=True) as w:  # tracks of the last frame only
        for s in FRAME_STAMPS[2:]:
            w.write("/detections", s, detections_msg(w.store, [Box(10, 10, 6, 6)], s, "cam"))
        s = FRAME_STAMPS[-1]
        w.write("/tracks", s, detections_msg(w.store, [Box(10, 10, 6, 6, id="3")], s, "cam"))
    with caplog.at_level("WARNING"):
        render(RenderConfig(bag, tmp_path / "v.gif", outputs=outputs))
    assert [label.split("S ", 1)[1] for label in labels] == [
        "DET - TRUE - TRK -", "DET - TRUE - TRK -", "DET 1 TRUE - TRK -", "DET 1 TRUE - TRK -",
        "DET 1 TRUE - TRK -", "DET 1 TRUE - TRK 1",
    ]
    assert f"2 of 6 frames of {IMAGE_TOPIC} rendered have no message on /detections in {outputs}" in caplog.text
    assert f"5 of 6 frames of {IMAGE_TOPIC} rendered have no message on /tracks in {outputs}" in caplog.text


def test_a_bag_without_outputs_is_drawn_without_a_count_warning(tiny_bag, tmp_path, monkeypatch, caplog):
    """Its detections were labelled "DET 0", as if the node had found nothing: unknown."""
    labels = _recorded_labels(monkeypatch)
    render(RenderConfig(tiny_bag, tmp_path / "v.gif", max_frames=2))
    assert all(" DET - " in label for label in labels) and "no message on" not in caplog.text


def _mask_only_bag(tiny_bag: Path, path: Path) -> Path:
    """``tiny_bag`` without its truth targets: the truth is its mask alone."""
    with BagReader(tiny_bag) as reader, BagWriter(path) as w:
        for topic, t, msg in reader.messages():
            if topic != TRUTH_TARGETS_TOPIC:
                w.write(topic, t, msg)
    return path


def test_truth_of_a_mask_alone_is_counted_from_its_components(tiny_bag, tmp_path, monkeypatch):
    """A bag with a truth mask but no truth targets was labelled "TRUE 0" on every frame."""
    labels = _recorded_labels(monkeypatch)
    bag = _mask_only_bag(tiny_bag, tmp_path / "mask_only")
    with BagReader(bag) as reader:
        masks = [reader.image(TRUTH_MASK_TOPIC, m) for _, _, m in reader.messages([TRUTH_MASK_TOPIC])]
    counts = [str(components(m > 0)[1]) for m in masks]  # two targets that touch are one
    render(RenderConfig(bag, tmp_path / "v.gif"))
    assert [label.split("TRUE ", 1)[1] for label in labels] == counts
    assert set(counts) - {"0"}


def test_only_the_truth_masks_of_the_frames_rendered_are_labelled(tiny_bag, tmp_path, monkeypatch):
    """Every truth mask of the bag was decoded and labelled before the first frame was
    drawn, even for ``--max-frames 2``."""
    from irstd_ros.bags import render as render_module

    labels = _recorded_labels(monkeypatch)
    labelled: list[np.ndarray] = []
    count = render_module.components

    def count_labelled(mask):
        labelled.append(mask)
        return count(mask)

    monkeypatch.setattr(render_module, "components", count_labelled)
    bag = _mask_only_bag(tiny_bag, tmp_path / "mask_only")
    render(RenderConfig(bag, tmp_path / "v.gif", max_frames=2))
    assert len(labels) == 2 and len(labelled) == 2
    assert [label.split("TRUE ", 1)[1] for label in labels] == [str(count(m)[1]) for m in labelled]


def test_truth_targets_of_another_type_are_a_bag_error_naming_it(tiny_bag, tmp_path):
    """They were read as a Detection2DArray: a raw AttributeError."""
    bag = tmp_path / "target_array_truth"
    with BagReader(tiny_bag) as reader, BagWriter(bag) as w:
        for topic, t, msg in reader.messages():
            if topic == TRUTH_TARGETS_TOPIC:
                msg = targets_msg(w.store, [], stamp_ns(msg.header), "cam")
            w.write(topic, t, msg)
    with pytest.raises(BagError, match=(
        f"{TRUTH_TARGETS_TOPIC} in {bag} is irstd_ros/msg/TargetArray, expected vision_msgs/msg/Detection2DArray"
    )):
        render(RenderConfig(bag, tmp_path / "v.gif"))


def test_frames_that_change_size_are_one_error_line_naming_the_frame(tmp_path, capsys):
    """It was imageio's "All images in a movie should have same size", naming no frame."""
    bag = _frames_bag(tmp_path / "bag", [(32, 40)] * 3 + [(16, 20)] * 2)
    out = tmp_path / "v.mp4"
    code, err = run_cli(capsys, "render", str(bag), "--out", str(out), "--sheet", str(tmp_path / "s.png"))
    assert code == 2
    assert one_error_line(err).endswith(
        f"{bag}: frame #3 on {IMAGE_TOPIC} (stamp {FRAME_STAMPS[3]} ns) is 20x16 but the first is 40x32: "
        "the frames change size mid-bag, and a video's frames share one size"
    )
    assert list(tmp_path.iterdir()) == [bag]  # no video, no partial file, no sheet
