import numpy as np
import pytest
import torch
from _support.datasets import write_dataset

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.core.normalization import InputNorm
from irstd_ros.models import build_model, named_config
from irstd_ros.training.calibrate import CalibrationConfig, calibrate, fit_platt


def test_platt_fit_recovers_a_known_scale_and_offset():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(0.25 * z - 1.0)))).astype(float)
    a, b = fit_platt(z, y, np.ones_like(z))
    assert a == pytest.approx(0.25, abs=0.02) and b == pytest.approx(-1.0, abs=0.1)


@pytest.mark.parametrize("name", ["tiny", "fast_refine"])
def test_calibration_is_folded_into_the_last_layer_and_recorded(tmp_path, name):
    rng = np.random.default_rng(1)
    frames = []
    for i in range(4):
        img = rng.normal(80, 3, (32, 32)).clip(0, 255).astype(np.uint8)
        img[10:13, 10:13] = 200
        mask = np.zeros((32, 32), bool)
        mask[10:13, 10:13] = True
        frames.append((str(i), img, mask))
    root = write_dataset(tmp_path / "d", frames, {"train": ["0", "1", "2", "3"]})
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
