"""GPU training on the CPU (tiny model and sizes): device batches, augmentation, schedule,
checkpoints, resume, the final evaluation, the pack and folder inputs, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.cli.main import main
from irstd_ros.core.normalization import InputNorm, centred_wide, normalize
from irstd_ros.data.pack import PackConfig, build_pack
from irstd_ros.data.transforms import pad_to
from irstd_ros.errors import BackendError, ConfigError, DatasetError
from irstd_ros.models import build_model, named_config
from irstd_ros.tools.gpu_session import make_dry_data
from irstd_ros.training.gpu import (
    RECIPES,
    DeviceBatches,
    augment_batch,
    lr_at_progress,
    recipe_config,
    train_gpu,
)
from irstd_ros.training.scoring import torch_frames
from irstd_ros.training.torch_norm import normalize_torch

CROP = 32
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_dry_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def pack(roots, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "p.npz"
    build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=roots["sirst"], crop=CROP))
    return out


def _cfg(tmp_path, **kw):
    base = dict(model="tiny", device="cpu", crop=CROP, batch_size=4, epochs=3, threads=1, out=tmp_path / "run")
    base.update(kw)
    return recipe_config(base.pop("recipe", "paper"), **base)


def test_augment_batch_matches_the_numpy_augmentation():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((8, 6, 6), dtype=np.float32))
    flips = torch.from_numpy(rng.random((8, 2)) < 0.5)
    k = torch.from_numpy(rng.integers(0, 4, 8))
    ax, am = augment_batch(x, x > 0.5, flips, k)
    for i in range(8):
        ref = x[i].numpy()
        if flips[i, 0]:
            ref = ref[:, ::-1]
        if flips[i, 1]:
            ref = ref[::-1]
        ref = np.rot90(ref, int(k[i]))
        assert np.array_equal(ax[i].numpy(), ref)
        assert np.array_equal(am[i].numpy(), ref > 0.5)


def test_device_batches_are_normalised_windows_of_the_frames():
    rng = np.random.default_rng(1)
    items = []
    for i, (h, w) in enumerate([(40, 48), (20, 24), (32, 32)]):  # one smaller than the crop
        img = rng.integers(0, 200, (h, w)).astype(np.uint8)
        items.append((img, img > 190, f"f{i}"))
    norm = InputNorm(kind="robust", background=16)
    data = DeviceBatches(items, CROP, norm, CPU)
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 1, 2, 0])
    size = data.sizes[idx]
    u = torch.rand((4, 2), generator=torch.Generator().manual_seed(0))
    off = (u * (size - CROP + 1).double()).long()
    x, m = data.batch(idx, gen)
    assert x.shape == (4, 1, CROP, CROP) and m.shape == (4, 1, CROP, CROP)
    for j in range(4):
        y0, x0 = (int(v) for v in off[j])
        raw = data.images[idx[j], y0 : y0 + CROP, x0 : x0 + CROP].numpy()
        ref = normalize(raw, norm)
        got = x[j, 0].numpy()
        # the sample was then flipped/turned: it equals one of the 8 symmetries of ref
        syms = [np.rot90(r, q) for r in (ref, ref[:, ::-1], ref[::-1], ref[::-1, ::-1]) for q in range(4)]
        assert min(np.abs(got - s).max() for s in syms) <= 1e-4


@pytest.mark.parametrize("dtype, offset", [(np.uint32, 3_000_000_000), (np.int32, -2_000_000_000),
                                           (np.float64, 1e9)])
def test_wide_frames_keep_their_noise_and_targets_in_training_and_its_evaluation(dtype, offset):
    # float32 goes in steps of 256 at 3e9: a frame of noise 4 counts came out flat
    rng = np.random.default_rng(2)
    img = rng.normal(0, 4, (40, 48)) + offset
    img[20:23, 30:33] += 48  # a 12-sigma target
    img = np.rint(img).astype(dtype) if np.issubdtype(dtype, np.integer) else img.astype(dtype)
    items = [(img, np.zeros(img.shape, bool), "wide")]
    norm = InputNorm(kind="robust")
    frames, integer = torch_frames([img])
    assert integer == np.issubdtype(dtype, np.integer)
    np.testing.assert_allclose(normalize_torch(frames, norm, integer)[0].numpy(), normalize(img, norm),
                               atol=1e-3)
    data = DeviceBatches(items, CROP, norm, CPU)  # the frame is as large as a crop or larger
    assert data.images.shape[1:] == img.shape
    np.testing.assert_allclose(normalize_torch(data.images, norm, data.integer)[0].numpy(),
                               normalize(img, norm), atol=1e-3)


def test_a_wide_frame_is_centred_once_about_its_own_median():
    # half dark, half a million counts brighter, 8 rows padded to the crop by reflection
    # (more dark rows): the frame was centred again about the padded frame's median, which
    # shifted it by half a million counts (a second pass and copy the normalisation undoes)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4, (8, CROP)).astype(np.uint32)
    img[4:] += 1_000_000
    mask = np.zeros(img.shape, bool)
    data = DeviceBatches([(img, mask, "wide")], CROP, InputNorm(kind="robust"), CPU)
    centred = pad_to(centred_wide(img), mask, CROP)[0]
    assert np.median(centred) < -400_000  # what a second centring would take away
    assert np.array_equal(data.images[0].numpy(), centred.astype(np.float32)) and data.integer


def test_lr_schedules():
    cfg = recipe_config("large", data="x", minutes=1.0, epochs=10)
    assert cfg.schedule_by == "time" and cfg.batch_size == 64
    assert lr_at_progress(cfg, 0.0, 0.0) < cfg.lr / 100  # warm-up starts near zero
    assert lr_at_progress(cfg, 0.01, cfg.warmup_epochs) == pytest.approx(cfg.lr, rel=1e-3)
    assert lr_at_progress(cfg, 1.0, 9.0) == pytest.approx(cfg.min_lr)
    paper = recipe_config("paper", data="x")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.loss) == (1500, 8, 1e-4, "softiou")
    assert lr_at_progress(paper, 0.7, 1000.0) == paper.lr
    assert recipe_config("large", data="x").schedule_by == "epochs"  # no budget: by epochs
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe_config("fast", data="x")
    assert set(RECIPES) == {"paper", "large"}


@pytest.mark.parametrize("key", ["metrics", "trainer", "device"])
def test_extra_may_not_replace_what_gpu_checkpoints_record_themselves(key):
    # spread last into the checkpoints' extra, `metrics` replaced the run's measured ones
    with pytest.raises(ConfigError, match=f"extra may not set {key}: the checkpoints record .*{key}"):
        recipe_config("paper", data="x", extra={key: "x", "recipe": "mine"})
    assert recipe_config("paper", data="x", extra={"recipe": "mine"}).extra == {"recipe": "mine"}


def test_train_on_a_pack_evaluates_and_resumes(tmp_path, pack):
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=2))
    assert summary["epochs_done"] == 2 and summary["stop"] == "epochs"
    ev = summary["eval"]
    assert ev["images"] == 4 and ev["set"] == "nudt_test"
    for key in ("iou", "niou", "f1", "pd", "fa"):
        assert key in ev
    model, info, _ = load_checkpoint(summary["model"])
    assert info.norm.kind == "robust" and info.norm.background == 32
    assert info.extra["metrics"]["images"] == 4 and info.extra["data"]["groups"] == ["nudt_train"]
    half, _, _ = load_checkpoint(summary["model_fp16"])
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(summary["model_fp16"]).values()} <= {torch.float16, torch.int64}
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) for h in history)
    again = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=3))
    assert again["epochs_done"] == 3  # resumed: one more epoch
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2, 3]


def test_the_final_weights_are_written_before_the_evaluation(tmp_path, pack, monkeypatch):
    """A session's time limit that cuts the final evaluation short loses no weights, and
    the training's summary and history are written too."""
    from irstd_ros.training import scoring

    def cut_off(*args, **kwargs):
        raise TimeoutError("the session's time limit")

    monkeypatch.setattr(scoring, "evaluate_items", cut_off)
    with pytest.raises(TimeoutError):
        train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1))
    for name in ("model.safetensors", "model_fp16.safetensors"):
        _, info, _ = load_checkpoint(tmp_path / "run" / name)
        assert "metrics" not in info.extra
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())  # what the session returns
    assert summary["epochs_done"] == 1 and summary["eval"] is None
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1]


def test_train_on_folders_with_a_time_budget(tmp_path, roots):
    summary = train_gpu(_cfg(tmp_path, recipe="large", data=roots["nudt"], batch_size=4, epochs=500,
                             minutes=0.02, eval_split="test"))
    assert summary["stop"] == "minutes" and summary["epochs_done"] < 500
    assert summary["eval"]["images"] == 4


def test_cli_train_gpu(tmp_path, pack, capsys):
    code = main(["train-gpu", "--pack", str(pack), "--out", str(tmp_path / "cli"), "--model", "tiny",
                 "--device", "cpu", "--crop", str(CROP), "--batch-size", "4", "--max-steps", "2",
                 "--threads", "1", "--eval-group", "none", "--train-groups", "nudt_train,sirst_crops",
                 "--ema", "0.99"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 2 and out["eval"] is None and out["stop"] == "max_steps"
    assert out["config"]["ema"] == 0.99
    assert main(["train-gpu", "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2  # no data


@pytest.mark.gpu
def test_train_on_cuda_bf16_channels_last(tmp_path, pack):
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, device="cuda", recipe="large", epochs=3,
                             minutes=0.2))
    assert summary["device"].startswith("cuda") and summary["peak_gpu_mem_mb"] > 0
    assert np.isfinite(summary["final_loss"]) and summary["eval"]["images"] == 4
    load_checkpoint(summary["model_fp16"])


@pytest.mark.gpu
def test_device_batches_on_cuda_are_normalised_like_numpy():
    rng = np.random.default_rng(2)
    items = [(rng.integers(0, 255, (64, 80)).astype(np.uint8), np.zeros((64, 80), bool), "a")]
    norm = InputNorm(kind="robust", background=32)
    data = DeviceBatches(items, 64, norm, torch.device("cuda"))
    x, _ = data.batch(torch.tensor([0], device="cuda"), torch.Generator(device="cuda").manual_seed(0))
    assert x.is_cuda and x.shape == (1, 1, 64, 64) and torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("threshold", "abc", "threshold must be a number in (0, 1), got 'abc'"),
        ("lr", float("nan"), "lr must be a number > 0"),
        ("warmup_epochs", -1, "warmup_epochs must be an integer >= 0"),
        ("save_every_s", float("nan"), "save_every_s must be a number >= 0"),
        ("eval_batch", 0, "eval_batch must be an integer >= 1"),
        ("train_groups", "nudt_train", "train_groups must be a non-empty list of names"),
        ("train_groups", [], "train_groups must be a non-empty list of names"),
        ("eval_group", 5, "eval_group must be a string"),
        ("pack", 5, "pack must be a path"),
        ("channels_last", "no", "channels_last must be true or false"),
        ("schedule_by", ["time"], "schedule_by must be a string"),
        ("device", "bogus", "device must be one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_gpu_fields_of_the_wrong_type_or_range_are_one_config_error(tmp_path, field, value, words):
    with pytest.raises(ConfigError) as info:
        _cfg(tmp_path, data=tmp_path, **{field: value})
    assert words in str(info.value)


def test_gpu_config_converts_numeric_strings(tmp_path):
    cfg = _cfg(tmp_path, data=tmp_path, lr="3e-4", save_every_s="60", warmup_epochs=2.0, pack=str(tmp_path))
    assert cfg.lr == pytest.approx(3e-4) and cfg.save_every_s == 60.0 and cfg.warmup_epochs == 2
    assert type(cfg.warmup_epochs) is int and cfg.pack == tmp_path
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe_config(["paper"])  # type: ignore[arg-type]


def test_module_entry_refuses_an_unusable_out_before_training(tmp_path, pack, monkeypatch, capsys):
    from irstd_ros.training import gpu

    monkeypatch.setattr(gpu, "train_gpu", lambda cfg: pytest.fail("trained despite a bad --out"))
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--pack", str(pack), "--out", str(afile), "--device", "cpu"])
    assert exc.value.code == 2
    assert f"--out {afile}: is a file" in capsys.readouterr().err.splitlines()[-1]
    assert afile.read_text() == "keep me"


def test_module_entry_gives_one_line_for_a_bad_pack_group(tmp_path, pack, capsys):
    from irstd_ros.training import gpu

    code = gpu.main(["--pack", str(pack), "--out", str(tmp_path / "run"), "--device", "cpu",
                     "--train-groups", "nudt_train,no_such_group"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("python -m irstd_ros.training.gpu: error: ")
    assert "no_such_group" in err[-1] and not any("Traceback" in line for line in err)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"implant": {"count": [1, 6]}}, "(no mixture): implant need irstd train"),
        ({"scale_prob": 0.5, "sensor": {"row_fpn_prob": 0.2}}, "(no mixture): sensor, scale_prob need"),
        ({"samples_per_epoch": 8}, "(no mixture): samples_per_epoch need"),
        ({"consistency": 1.0}, "no turn-consistency term (consistency)"),
    ],
)
def test_options_the_gpu_loop_does_not_apply_are_refused(tmp_path, options, words):
    with pytest.raises(ConfigError) as info:
        _cfg(tmp_path, data=tmp_path, **options)
    assert words in str(info.value)


def test_a_run_resumed_with_its_budget_spent_trains_no_further(tmp_path, roots, caplog):
    # minutes is the budget of the whole run, resumptions included (its --help says so)
    for _ in range(2):
        summary = train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=50, minutes=1e-6, eval_split=None))
        assert (summary["epochs_done"], summary["stop"]) == (1, "minutes")
    assert "budget (1e-06 min) was spent by its earlier invocations" in caplog.text  # not silent
    for _ in range(2):
        summary = train_gpu(_cfg(tmp_path, out=tmp_path / "steps", data=roots["nudt"], max_steps=1, eval_split=None))
        assert (summary["steps"], summary["stop"]) == (1, "max_steps")


def test_resume_refuses_another_input_normalisation(tmp_path, roots):
    train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=1, eval_split=None))
    with pytest.raises(ConfigError, match="trained on inputs normalised as .*background=32.*this run's are .*background=16"):
        train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=2, background=16, eval_split=None))


def test_resume_refuses_other_data(tmp_path, roots):
    """Resumed on another set, the checkpoint recorded the new set alone for every epoch."""
    train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=1, eval_split=None))
    with pytest.raises(ConfigError, match="was trained on other data .*use a new --out"):
        train_gpu(_cfg(tmp_path, data=roots["sirst"], epochs=2, eval_split=""))
    assert train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=2, eval_split=None))["epochs_done"] == 2


def test_resume_refuses_another_recipe(tmp_path, roots):
    train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=1, eval_split=None))
    with pytest.raises(ConfigError, match=r"another recipe \(lr 0.0001 -> 0.0003, warmup_epochs 0 -> 1\)"):
        train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=2, lr=3e-4, warmup_epochs=1, eval_split=None))
    assert train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=2, eval_split=None))["epochs_done"] == 2

def test_a_pack_without_the_eval_group_is_refused_before_the_training(tmp_path, roots):
    # a pack made with irstd pack --no-nudt-test has no nudt_test: found out before any epoch,
    # not after the whole training (whose weights were then never written)
    small = tmp_path / "small.npz"
    build_pack(PackConfig(out=small, nudt=roots["nudt"], sirst=None, crop=CROP, nudt_splits=("train",)))
    with pytest.raises(DatasetError, match="no group 'nudt_test' to evaluate on.*--eval-group none"):
        train_gpu(_cfg(tmp_path, pack=small, epochs=1))
    assert not (tmp_path / "run").exists()
    summary = train_gpu(_cfg(tmp_path, pack=small, epochs=1, eval_group=""))  # --eval-group none
    assert summary["eval"] is None and (tmp_path / "run" / "model_fp16.safetensors").is_file()


def test_a_config_file_with_a_null_eval_group_evaluates_nothing(tmp_path, pack):
    import argparse

    from irstd_ros.training.gpu import add_arguments, config_from_args

    (tmp_path / "c.yaml").write_text(f"pack: {pack}\neval_group: null\neval_split: null\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]))
    assert (cfg.eval_group, cfg.eval_split) == (None, None)  # not the default nudt_test
    cfg = config_from_args(parser.parse_args(["--pack", str(pack), "--out", str(tmp_path / "r")]))
    assert cfg.eval_group == "nudt_test"  # not given: the default


def _args(*argv):
    import argparse

    from irstd_ros.training.gpu import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--data", "d", "--pack", "p.npz"], "give a dataset folder (data, --data) or a pack (pack, --pack), not both"),
        (["--data", "d", "--train-groups", "sirst_crops"], "train_groups (--train-groups) only applies to a pack"),
        (["--data", "d", "--eval-group", "sirst_test"], "eval_group (--eval-group) only applies to a pack"),
        (["--data", "d", "--eval-group", "none", "--train-groups", "a,b"],
         "train_groups, eval_group (--train-groups, --eval-group) only apply to a pack"),
    ],
)
def test_data_with_a_pack_or_pack_options_without_one_are_refused(argv, words, tmp_path):
    """Both were silently ignored: --data under --pack, the group options under --data."""
    with pytest.raises(ConfigError) as err:
        _args(*argv, "--out", str(tmp_path / "r"))
    assert words in str(err.value)


def test_a_config_file_pack_with_a_data_flag_is_refused_and_the_lone_sources_are_kept(tmp_path):
    (tmp_path / "c.yaml").write_text("pack: p.npz\ntrain_groups: [a, b]\n")
    with pytest.raises(ConfigError, match="not both"):
        _args("--config", str(tmp_path / "c.yaml"), "--data", "d", "--out", str(tmp_path / "r"))
    cfg = _args("--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"))
    assert (str(cfg.pack), cfg.train_groups) == ("p.npz", ["a", "b"])
    cfg = _args("--data", "d", "--eval-split", "none", "--out", str(tmp_path / "r"))
    assert (str(cfg.data), cfg.pack, cfg.eval_split) == ("d", None, None)
    with pytest.raises(ConfigError, match="not both"):
        recipe_config("paper", data="d", pack="p.npz")
    assert recipe_config("paper", data="p.npz", pack="p.npz").pack is not None  # one source (a recorded config)


def test_the_weight_average_is_the_model_and_the_raw_weights_are_scored_beside_it(tmp_path, pack):
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=2, ema=0.9))
    averaged = load_checkpoint(summary["model"])[0].state_dict()
    raw = load_checkpoint(tmp_path / "run" / "last.safetensors")[0].state_dict()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    assert summary["eval"]["set"] == summary["eval_raw_weights"]["set"] == "nudt_test"
    assert summary["config"]["ema"] == 0.9
    again = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=3, ema=0.9))  # the average resumes
    assert again["epochs_done"] == 3
    train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1, out=tmp_path / "plain"))
    with pytest.raises(ConfigError, match="no weight average"):  # not started over unseen
        train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=2, out=tmp_path / "plain", ema=0.9))


def test_cli_train_gpu_refuses_an_ema_that_never_moves(tmp_path, pack, capsys):
    with pytest.raises(SystemExit) as exited:  # a decay of 1 never moves: a usage error
        main(["train-gpu", "--pack", str(pack), "--out", str(tmp_path / "bad"), "--ema", "1"])
    assert exited.value.code == 2 and "--ema: must be a number in [0, 1)" in capsys.readouterr().err


def test_an_init_trained_on_other_inputs_is_a_warning_naming_both(tmp_path, roots, caplog):
    start = tmp_path / "start.safetensors"
    save_checkpoint(start, build_model(named_config("tiny")),
                    CheckpointInfo(model=named_config("tiny"), norm=InputNorm(kind="robust", knee=3.0, background=32)))
    with caplog.at_level("WARNING", logger="irstd_ros.training.train"):
        train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=1, max_steps=1, init=start, eval_split=None))
    assert f"init {start} was trained on inputs normalised as" in caplog.text and "knee=3.0" in caplog.text


def test_a_stop_request_ends_the_training_with_its_checkpoints_and_no_evaluation(tmp_path, pack):
    stop = threading.Event()
    stop.set()  # asked before the first step: that step runs, then the loop ends
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=50), stop)
    assert summary["stop"] == "terminated" and summary["steps"] == 1 and summary["epochs_done"] == 1
    assert summary["eval"] is None  # nudt_test is in the pack, but there is no time for it
    for name in ("last.safetensors", "model.safetensors", "model_fp16.safetensors"):
        _, info, _ = load_checkpoint(tmp_path / "run" / name)
        assert info.extra["train_state"]["step"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop"] == "terminated"


def test_a_stop_during_the_last_step_is_not_swallowed(tmp_path, pack):
    """A SIGTERM during the step that reached ``max_steps`` (or during the last checkpoint)
    set the stop, but the summary said ``max_steps`` and the evaluation ran on: under
    `timeout`, the minutes the signal asked back."""
    stop = threading.Event()
    stop.set()  # already asked when the only step ends
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=50, max_steps=1), stop)
    assert summary["stop"] == "terminated" and summary["steps"] == 1
    assert summary["eval"] is None  # nudt_test is in the pack


@pytest.mark.parametrize("entry", [["irstd_ros.training.gpu"], ["irstd_ros.cli.main", "train-gpu"]])
def test_sigterm_from_a_time_limit_leaves_the_checkpoints_the_session_returns(tmp_path, pack, entry):
    """scripts/gpu_session.sh runs the training under `timeout`: its SIGTERM stops the loop,
    the FP16 checkpoint and the summary are written, and the exit code says it was stopped.
    `irstd train-gpu` too (its SIGTERM was irstd's Terminated, mid-step: no checkpoint)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", *entry, "--pack", str(pack), "--out", str(out), "--model", "tiny",
           "--device", "cpu", "--crop", str(CROP), "--batch-size", "4", "--epochs", "100000", "--threads", "1",
           "--no-resume"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in proc.stderr:  # the first epoch's log line: the loop is running
            if "epoch 1/100000" in line:
                break
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated" in stderr.strip().splitlines()[-1]  # one readable line says so
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stop"] == "terminated" and 1 <= summary["epochs_done"] < 100000
    model, info, _ = load_checkpoint(out / "model_fp16.safetensors")
    assert info.extra["train_state"]["epoch"] == summary["epochs_done"]
    assert json.loads((out / "summary.json").read_text())["steps"] == summary["steps"]


def test_a_widened_start_is_kept_beside_the_run_as_irstd_train_keeps_it(tmp_path, roots):
    """``init_widen`` (or ``init_partial``) made a start that is no file of its own: the CPU
    trainer keeps it as init.safetensors (a soup of runs from it needs it as a parent), the
    GPU trainer kept nothing."""
    from irstd_ros.training.train import INIT_NAME

    narrow = tmp_path / "fast.safetensors"
    small = build_model(named_config("fast")).eval()
    save_checkpoint(narrow, small, CheckpointInfo(
        model=named_config("fast"), norm=InputNorm(kind="robust", background=32),
        extra={"data": {"root": "the narrow network's own data"}},
    ))
    kw = dict(data=roots["nudt"], model="fast_wide", epochs=1, max_steps=1, init=narrow, eval_split=None)
    train_gpu(_cfg(tmp_path, init_widen=True, **kw))
    start, info, _ = load_checkpoint(tmp_path / "run" / INIT_NAME)
    assert info.model == named_config("fast_wide") and info.extra["init"] == str(narrow)
    assert info.extra["data"] == {"root": "the narrow network's own data"}  # the source's, not the run's
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(start(x), small(x), atol=1e-5, rtol=1e-5)
    (tmp_path / "run" / INIT_NAME).write_bytes(b"marker")  # a resumption writes no start
    train_gpu(_cfg(tmp_path, init_widen=True, **{**kw, "epochs": 2, "max_steps": 2}))
    assert (tmp_path / "run" / INIT_NAME).read_bytes() == b"marker"
    plain = tmp_path / "plain"
    train_gpu(_cfg(tmp_path, **{**kw, "model": "fast", "out": plain}))
    assert not (plain / INIT_NAME).exists()  # an untransformed start is a file already


_SIGTERM_SCRIPT = """
import signal
from irstd_ros.training.gpu import sigterm_stop

seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))  # irstd's, say
with sigterm_stop() as stop:
    signal.raise_signal(signal.SIGTERM)  # loading: the previous handler, at once
    assert seen == [signal.SIGTERM] and stop.is_set()
with sigterm_stop() as stop:
    stop.deferring = True
    signal.raise_signal(signal.SIGTERM)  # a step: only the request
    assert stop.is_set() and len(seen) == 1
    signal.raise_signal(signal.SIGTERM)  # asked again: at once
    assert len(seen) == 2
signal.signal(signal.SIGTERM, signal.SIG_DFL)
print("handled", flush=True)
with sigterm_stop():
    signal.raise_signal(signal.SIGTERM)  # no handler before: exit 143, not the default kill
print("not reached", flush=True)
"""


def test_sigterm_outside_the_steps_or_twice_ends_at_once():
    """Before, SIGTERM while the data loaded, the checkpoints were saved or the evaluation
    ran (minutes) only set the stop, which nothing read any more: `kill` did nothing, a
    second one neither. Deferred only during the steps, and only the first. In a fresh
    interpreter: signals raised in the shared pytest process, whose earlier tests installed
    and removed rclpy's C-level handlers, once killed it (SIGSEGV in CI)."""
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert proc.stdout.split() == ["handled"]
    assert "stopped by SIGTERM outside the training steps" in proc.stderr


def test_an_epoch_cut_short_is_marked_partial(tmp_path, pack):
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=2, max_steps=1))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert summary["steps"] == 1 and history[0]["partial"] is True


def test_main_runs_from_a_thread_other_than_the_main_one(tmp_path, pack, capsys):
    """Only the main thread may install a signal handler: main() called from another one
    (an IDE's or a notebook's runner) raised ValueError before reading its arguments. It
    trains there as ever, without the SIGTERM stop (as ``irstd`` itself, cli.main)."""
    from irstd_ros.training.gpu import main as gpu_main

    before = signal.getsignal(signal.SIGTERM)
    result: list[object] = []

    def run() -> None:
        try:
            result.append(gpu_main(["--pack", str(pack), "--out", str(tmp_path / "run"), "--model", "tiny",
                                    "--device", "cpu", "--crop", str(CROP), "--batch-size", "4", "--epochs", "1",
                                    "--max-steps", "1", "--threads", "1", "--eval-group", "none", "--no-resume"]))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            result.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(120)
    assert result == [0], result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stop"] == "max_steps"
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_module_s_help_points_to_the_documented_options(capsys):
    """``python -m irstd_ros.training.gpu --help`` listed the options bare (their help lives
    with the CLI, above this layer): it says where each one is explained."""
    from irstd_ros.training.gpu import main as gpu_main

    with pytest.raises(SystemExit) as exc:
        gpu_main(["--help"])
    assert exc.value.code == 0
    assert "irstd train-gpu" in " ".join(capsys.readouterr().out.split())


def test_the_final_evaluation_refuses_nan_probabilities():
    """The GPU trainer's evaluation scored NaN probabilities (a diverged network) as silent
    background, as `irstd eval` did: Pd 0 with no word."""
    from irstd_ros.training.scoring import evaluate_items

    class Diverged(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, float("nan"))

    img = np.full((32, 32), 100, np.uint8)
    truth = np.zeros((32, 32), bool)
    truth[10:12, 10:12] = True
    with pytest.raises(BackendError, match="probabilities are NaN or infinite"):
        evaluate_items(Diverged(), [(img, truth, "f")], InputNorm(kind="robust"), 0.5, torch.device("cpu"), 16)


def test_a_teacher_is_distilled_on_every_sample(tmp_path, pack, monkeypatch):
    """``teacher`` (one or several checkpoints): their mean logits on each batch join the
    loss as irstd train distils them; a teacher of other inputs is refused before a step."""
    from irstd_ros.training import train as train_module  # the distillation term's home

    teacher = tmp_path / "teacher.safetensors"
    base = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1, eval_group="", out=tmp_path / "t"))
    norm = load_checkpoint(base["model"])[1].norm
    save_checkpoint(teacher, build_model(named_config("tiny")), CheckpointInfo(named_config("tiny"), norm=norm))
    seen = []
    real = train_module.distillation_loss
    monkeypatch.setattr(train_module, "distillation_loss",
                        lambda *a: seen.append((a[0].shape, a[1].shape, a[2].tolist(), a[3])) or real(*a))
    summary = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1, eval_group="", teacher=[teacher, teacher],
                             distill=0.5, distill_keep_labels=True))
    assert summary["config"]["teacher"] == [str(teacher), str(teacher)] and summary["config"]["distill"] == 0.5
    assert seen and all(s[0] == s[1] and set(s[2]) == {1.0} and s[3] is not None for s in seen)
    plain = train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1, eval_group="", out=tmp_path / "p"))
    assert len(seen) == summary["steps"] and plain["final_loss"] != summary["final_loss"]
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, build_model(named_config("tiny")), CheckpointInfo(named_config("tiny")))
    with pytest.raises(ConfigError, match="normalises inputs as"):
        train_gpu(_cfg(tmp_path, pack=pack, data=pack, epochs=1, eval_group="", teacher=other, out=tmp_path / "o"))


def test_a_gpu_run_resumed_with_fewer_epochs_is_refused_as_the_cpu_one(tmp_path, roots):
    """train-gpu resumed with fewer epochs than it had trained went on silently, training nothing."""
    train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=2, eval_split=None))
    with pytest.raises(ConfigError, match="has trained 2 epochs, more than epochs 1"):
        train_gpu(_cfg(tmp_path, data=roots["nudt"], epochs=1, eval_split=None))


def test_eval_split_auto_is_the_folder_s_held_out_split(roots):
    """The field irstd train shares: auto scores SIRST-v2's val, NUDT-SIRST's test."""
    from irstd_ros.training.gpu import evaluation_split, load_items

    for kind in ("nudt", "sirst"):
        cfg = recipe_config("paper", data=roots[kind], eval_split="auto")
        stems = [stem for _, _, stem in load_items(cfg, training=False, eval_split=evaluation_split(cfg))]
        assert stems == [f"{kind}{i:03d}" for i in range(8, 12)]  # the last third: held out
    assert recipe_config("paper", data=roots["nudt"]).eval_split == "test"  # train-gpu's default
    assert recipe_config("paper", data=roots["nudt"], eval_split="none").eval_split is None
