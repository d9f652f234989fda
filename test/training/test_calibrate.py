import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.checkpoints import diverged_checkpoint
from _support.cli import one_error_line, run_cli
from _support.datasets import write_dataset
from _support.files import unwritable_folder
from safetensors import SafetensorError

from irstd_ros import checkpoint
from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.cli import calibrate as cli_calibrate
from irstd_ros.core.constants import CANDIDATE_THRESHOLD, GATED_THRESHOLD
from irstd_ros.core.normalization import InputNorm
from irstd_ros.errors import CheckpointError, ConfigError, DatasetError
from irstd_ros.models import build_model, named_config
from irstd_ros.training import calibrate as calibration
from irstd_ros.training.calibrate import (
    CalibrationConfig,
    calibrate,
    fit_platt,
    fit_two_piece,
    operating_point,
)


def test_platt_fit_recovers_a_known_scale_and_offset():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.25 * z - 1.0)))).astype(float)
    a, b = fit_platt(z, y, np.ones_like(z))
    assert a == pytest.approx(0.25, abs=0.02) and b == pytest.approx(-1.0, abs=0.1)


def _point_frames() -> list:
    rng = np.random.default_rng(1)
    frames = []
    for i in range(4):
        img = rng.normal(80, 3, (32, 32)).clip(0, 255).astype(np.uint8)
        img[10:13, 10:13] = 200
        mask = np.zeros((32, 32), bool)
        mask[10:13, 10:13] = True
        frames.append((str(i), img, mask))
    return frames


def _point_dataset(path):
    return write_dataset(path, _point_frames(), {"train": ["0", "1", "2", "3"]})


@pytest.mark.parametrize("name", ["tiny", "fast_refine"])
def test_calibration_is_folded_into_the_last_layer_and_recorded(tmp_path, name):
    root = _point_dataset(tmp_path / "d")
    torch.manual_seed(0)
    model = build_model(named_config(name))
    if name == "fast_refine":  # the refinement writes the logits: the fold goes there
        with torch.no_grad():
            model.refine.out.weight.normal_(std=0.1)
    src = save_checkpoint(tmp_path / "m.safetensors", model,
                          CheckpointInfo(named_config(name), InputNorm(kind="robust", background=16)))
    fit = calibrate(CalibrationConfig(src, tmp_path / "cal.safetensors", ((root, "train"),), frames=3))
    new, info, _ = load_checkpoint(tmp_path / "cal.safetensors")
    assert info.extra["calibration"]["frames"] == 3 and info.extra["calibration"]["a"] == fit["a"]
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = fit["a"] * model.eval()(x) + fit["b"]
        np.testing.assert_allclose(new(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_operating_point_maps_the_threshold_through_the_fit():
    assert operating_point(0.2, 1.0, 0.0) == pytest.approx(0.2)
    t = operating_point(0.2, 0.33, 0.4)
    # the new threshold's logit is the old one's, mapped: the same raw cut
    assert np.log(t / (1 - t)) == pytest.approx(0.33 * np.log(0.2 / 0.8) + 0.4)


def _assert_same_detections(z_old, t_old, z_new, t_new):
    """Both maps pass the same pixels (away from the cut, float rounding aside), and the
    cut is not trivial."""
    p_old, p_new = torch.sigmoid(z_old), torch.sigmoid(z_new)
    assert 0 < int((p_old > t_old).sum()) < p_old.numel()
    margin = (p_old - t_old).abs() > 1e-4
    assert torch.equal((p_old > t_old)[margin], (p_new > t_new)[margin])


def test_recalibration_keeps_the_operating_point_and_the_earlier_fit(tmp_path):
    root = _point_dataset(tmp_path / "d")
    torch.manual_seed(0)
    model = build_model(named_config("tiny"))
    with torch.no_grad():  # spread the logits so that some pixels pass either threshold
        model.head.weight.mul_(40.0)
    src = save_checkpoint(tmp_path / "m.safetensors", model,
                          CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16), threshold=0.3))
    first = tmp_path / "cal1.safetensors"
    fit = calibrate(CalibrationConfig(src, first, ((root, "train"),), frames=4, keep_operating_point=True))
    old, old_info, _ = load_checkpoint(src)
    new, new_info, _ = load_checkpoint(first)
    assert fit["threshold_before"] == old_info.threshold == 0.3
    assert new_info.threshold == pytest.approx(operating_point(0.3, fit["a"], fit["b"]))
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        _assert_same_detections(old.eval()(x), old_info.threshold, new.eval()(x), new_info.threshold)
    # calibrated again: the maps compose, the earlier fit is kept
    second = tmp_path / "cal2.safetensors"
    calibrate(CalibrationConfig(first, second, ((root, "train"),), frames=4))
    record = load_checkpoint(second)[1].extra["calibration"]
    assert record["previous"]["threshold_before"] == 0.3 and record["previous"]["a"] == fit["a"]
    assert "threshold_before" not in record  # the threshold was left as it was


def test_the_parent_s_metrics_move_into_the_record_not_claimed_by_the_output(tmp_path):
    """The scores measured on the weights before the fit (its ECE, its detections at the
    threshold) were kept as the calibrated checkpoint's own."""
    root = _point_dataset(tmp_path / "d")
    metrics = {"threshold": 0.5, "sirst_v2_val": {"iou": 0.57, "ece": 0.03}}
    src = save_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                          CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16),
                                         extra={"metrics": metrics, "data": "D"}))
    calibrate(CalibrationConfig(src, tmp_path / "cal.safetensors", ((root, "train"),), frames=2))
    extra = load_checkpoint(tmp_path / "cal.safetensors")[1].extra
    assert "metrics" not in extra and extra["data"] == "D"
    assert extra["calibration"]["metrics_before"] == metrics

def _two_piece_pixels(rng):
    """Candidates (logit > -6) calibrated by 0.3 z + 0.5; below, a background far rarer
    than that line says (a 1 % sample weighted back by 100, as :func:`collect` draws)."""
    z_hi = rng.uniform(-6, 8, 20000)
    y_hi = rng.random(z_hi.size) < 1 / (1 + np.exp(-(0.3 * z_hi + 0.5)))
    z_lo = rng.uniform(-14, -6, 5000)
    y_lo = rng.random(z_lo.size) < 1e-3
    z = np.concatenate([z_hi, z_lo])
    return z, np.concatenate([y_hi, y_lo]).astype(float), np.concatenate([np.ones(z_hi.size), np.full(z_lo.size, 100.0)])


def test_two_piece_fit_recovers_the_candidates_line_and_a_steep_tail():
    z, y, w = _two_piece_pixels(np.random.default_rng(0))
    a, b, knee, slope = fit_two_piece(z, y, w)
    assert a == pytest.approx(0.3, abs=0.03) and b == pytest.approx(0.5, abs=0.1)
    assert knee == pytest.approx(a * -6.0 + b)
    assert slope > 3.0  # one line would leave the tail at p ~ 0.2


def test_two_piece_calibration_adds_the_knee_and_keeps_the_operating_point(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    monkeypatch.setattr(calibration, "collect", lambda *args, **kwargs: _two_piece_pixels(rng))
    root = _point_dataset(tmp_path / "d")
    torch.manual_seed(0)
    model = build_model(named_config("tiny")).eval()
    with torch.no_grad():
        model.head.weight.mul_(40.0)
    src = save_checkpoint(tmp_path / "m.safetensors", model,
                          CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16), threshold=0.3))
    fit = calibrate(CalibrationConfig(src, tmp_path / "c.safetensors", ((root, "train"),), frames=4,
                                      keep_operating_point=True, two_piece=True))
    new, info, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert info.model.logit_knee and fit["method"] == "platt-two-piece"
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        z = model(x)
        u = fit["a"] * z + fit["b"]
        expected = torch.minimum(u, fit["knee"] + fit["slope"] * (u - fit["knee"]))
        torch.testing.assert_close(new(x), expected, rtol=1e-4, atol=1e-4)
        _assert_same_detections(z, 0.3, new(x), info.threshold)
        # the tracker's thresholds (the defaults before: the source records none) move too
        assert info.own_tracking_thresholds() != (CANDIDATE_THRESHOLD, GATED_THRESHOLD)
        for before, after in zip((CANDIDATE_THRESHOLD, GATED_THRESHOLD), info.own_tracking_thresholds()):
            _assert_same_detections(z, before, new(x), after)
    with pytest.raises(ConfigError, match="already has a two-piece calibration"):
        calibrate(CalibrationConfig(tmp_path / "c.safetensors", tmp_path / "d.safetensors", ((root, "train"),),
                                    frames=4, two_piece=True))


def _calibrate_cli_args(tmp_path, out):
    root = _point_dataset(tmp_path / "d")
    src = save_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                          CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16)))
    return ["calibrate", "--weights", str(src), "--data", f"{root}:train", "--frames", "2", "--out", str(out)]


def test_calibrate_cli_checks_out_before_the_fit(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_calibrate, "calibrate", lambda *a, **k: pytest.fail("the fit ran before --out was checked"))
    ro = unwritable_folder(monkeypatch, tmp_path)
    code, err = run_cli(capsys, *_calibrate_cli_args(tmp_path, ro / "cal.safetensors"))
    assert code == 2 and "--out" in one_error_line(err) and "not writable" in err
    code, err = run_cli(capsys, *_calibrate_cli_args(tmp_path / "again", tmp_path))
    assert code == 2 and "is a directory" in one_error_line(err)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_calibrate_cli_where_no_file_can_be_written_fails_in_one_line(capsys, tmp_path):
    # refused up front or when written (as root os.access calls /proc writable): one line either way
    code, err = run_cli(capsys, *_calibrate_cli_args(tmp_path, "/proc/irstd_test.safetensors"))
    assert code == 2 and "/proc/irstd_test.safetensors" in one_error_line(err)


def test_calibrate_refuses_non_finite_weights_before_the_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "collect", lambda *a, **k: pytest.fail("fitted a diverged model"))
    src = diverged_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                              CheckpointInfo(named_config("tiny")), "head.weight", float("inf"))
    with pytest.raises(CheckpointError, match="non-finite values in tensor head.weight"):
        calibrate(CalibrationConfig(src, tmp_path / "c.safetensors", ((tmp_path, "train"),)))
    assert not (tmp_path / "c.safetensors").exists()


def test_calibrate_cli_a_write_that_fails_anyway_is_one_line(capsys, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    args = _calibrate_cli_args(tmp_path, tmp_path / "cal.safetensors")
    monkeypatch.setattr(checkpoint, "save_file", full_disk)  # --out passes its check, the write fails
    code, err = run_cli(capsys, *args)
    assert code == 2 and f"cannot write model file {tmp_path / 'cal.safetensors'}: " in one_error_line(err)
    assert not (tmp_path / "cal.safetensors").exists()


def test_calibrate_cli_a_negative_seed_is_a_usage_error_naming_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_calibrate, "calibrate", lambda *a, **k: pytest.fail("the fit ran with a bad --seed"))
    code, err = run_cli(capsys, *_calibrate_cli_args(tmp_path, tmp_path / "cal.safetensors"), "--seed", "-1")
    assert code == 2 and "argument --seed: must be >= 0, got -1 (see" in one_error_line(err)


def test_a_mask_of_another_shape_is_refused_not_read_pixel_for_pixel(tmp_path):
    # a transposed mask holds as many pixels as its image: flattened, it fitted silently
    img = np.full((32, 64), 80, np.uint8)
    img[10:13, 40:43] = 200
    mask = np.zeros((64, 32), bool)
    mask[40:43, 10:13] = True
    root = write_dataset(tmp_path / "d", [("0", img, mask)], {"train": ["0"]})
    src = save_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                          CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16)))
    with pytest.raises(DatasetError, match=r"size mismatch: 0.png is \(32, 64\), its mask \(64, 32\)"):
        calibrate(CalibrationConfig(src, tmp_path / "c.safetensors", ((root, "train"),)))
    assert not (tmp_path / "c.safetensors").exists()


def test_a_fit_stopped_at_its_bound_is_a_warning(caplog):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 5000)
    with caplog.at_level("WARNING", logger=calibration.__name__):
        fit_platt(z, (z < -1).astype(float), np.ones_like(z))  # scores that rank the wrong way
    assert "stopped at its bound (a=0.02" in caplog.text
    caplog.clear()
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 2.0)))).astype(float)
    with caplog.at_level("WARNING", logger=calibration.__name__):
        fit_platt(z, y, np.ones_like(z))
    assert "bound" not in caplog.text


def test_a_fit_on_scores_far_below_zero_raises_no_overflow_warning():
    z = np.r_[np.full(100, -2000.0), np.full(10, 50.0)]
    y = np.r_[np.zeros(100), np.ones(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_platt(z, y, np.ones_like(z))


# --- mask suffix; held-out splits are not fitted on -------------------------------------------
def _suffixed_dataset(path, splits=None):
    """:func:`_point_dataset`'s frames with masks named ``<stem>_pixels0.png`` (SIRST-v1's)."""
    return write_dataset(path, _point_frames(), splits or {"train": ["0", "1", "2", "3"]}, mask_suffix="_pixels0")


def _tiny(tmp_path):
    return save_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                           CheckpointInfo(named_config("tiny"), InputNorm(kind="robust", background=16)))


def test_calibrate_reads_masks_of_a_suffix(tmp_path, capsys):
    """`irstd calibrate` had no --mask-suffix: `_pixels0` masks were '2 of 2 samples lack an image or mask'."""
    root, src = _suffixed_dataset(tmp_path / "d"), _tiny(tmp_path)
    out = tmp_path / "cal.safetensors"
    code, err = run_cli(capsys, "calibrate", "--weights", str(src), "--data", str(root), "--frames", "2",
                        "--out", str(out), "--mask-suffix", "_pixels0")
    assert code == 0, err
    _, info, _ = load_checkpoint(out)
    assert info.extra["calibration"]["sources"] == [{"root": str(root), "split": "train", "mask_suffix": "_pixels0"}]
    with pytest.raises(DatasetError, match="lack an image or mask"):  # without it: none found
        calibrate(CalibrationConfig(src, tmp_path / "c.safetensors", ((root, "train"),)))


@pytest.mark.parametrize(("split", "words"), [("test", "split 'test' of {root} is held out"),
                                              ("trainval", "split 'trainval' of {root} holds 2 frames of the "
                                                           "held-out split 'test' (first: 2)")])
def test_calibrate_refuses_a_held_out_split_in_one_line(tmp_path, capsys, monkeypatch, split, words):
    """A threshold calibrated on the test frames is fitted to the frames results are reported on."""
    monkeypatch.setattr(calibration, "collect", lambda *a, **k: pytest.fail("fitted on held-out frames"))
    root = _suffixed_dataset(tmp_path / "d", {"train": ["0", "1"], "test": ["2", "3"], "trainval": ["0", "1", "2", "3"]})
    out = tmp_path / "cal.safetensors"
    code, err = run_cli(capsys, "calibrate", "--weights", str(_tiny(tmp_path)), "--data", f"{root}:{split}",
                        "--out", str(out), "--mask-suffix", "_pixels0")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"irstd calibrate: error: {words.format(root=root)}: a calibration "
                                         "fitted there would train on the frames results are reported on"), line
    assert not out.exists()


def test_the_record_holds_the_seed_and_the_stamp_of_the_input_and_drops_its_run_state(tmp_path):
    """A calibrated file kept its input's run state and its release stamp (version 0.8,
    its recipe and operating point), which describe other weights, and its record lacked
    the seed that chose the frames: a run could not be reproduced from the file."""
    root = _point_dataset(tmp_path / "d")
    stamp = {"version": "0.8", "recipe": {"calibration": "irstd calibrate ..."}, "operating_point": {"threshold": 0.95}}
    src = save_checkpoint(tmp_path / "m.safetensors", build_model(named_config("tiny")),
                          CheckpointInfo(named_config("tiny"), extra={**stamp, "train_state": {"epoch": 3}}))
    calibrate(CalibrationConfig(src, tmp_path / "cal.safetensors", ((root, "train"),), frames=3, seed=5))
    _, info, _ = load_checkpoint(tmp_path / "cal.safetensors")
    record = info.extra["calibration"]
    assert (record["seed"], record["frames_per_source"], record["frames"]) == (5, 3, 3)
    assert record["stamp_before"] == stamp
    assert not {"version", "recipe", "operating_point", "train_state"} & set(info.extra)
