import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.datasets import write_dataset

from irstd_ros.checkpoint import load_checkpoint, save_checkpoint
from irstd_ros.errors import ConfigError
from irstd_ros.models import build_model, named_config
from irstd_ros.training import train as train_module
from irstd_ros.training.teachers import Teachers
from irstd_ros.training.train import (
    INIT_NAME,
    TrainConfig,
    build_training_data,
    implant_config,
    init_from,
    lr_scheduler,
    teacher_sets,
    train,
)

SIZE = 32


def blob_dataset(root, n=8, seed=0):
    if root.exists():
        return root
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        img = rng.normal(60, 8, (SIZE, SIZE)).clip(0, 255)
        mask = np.zeros((SIZE, SIZE), bool)
        y, x = rng.integers(4, SIZE - 6, 2)
        img[y : y + 3, x : x + 3] = 230
        mask[y : y + 3, x : x + 3] = True
        frames.append((f"{i:03d}", img.astype(np.uint8), mask))
    return write_dataset(root, frames, {"train": [stem for stem, _, _ in frames]})


def held_out_dataset(root, held_out="test"):
    """:func:`blob_dataset` with its last two frames held out (NUDT-SIRST's ``test``,
    SIRST-v2's ``val``) and the first six to train on."""
    blob_dataset(root)
    (root / "train.txt").write_text("".join(f"{i:03d}\n" for i in range(6)))
    (root / f"{held_out}.txt").write_text("006\n007\n")
    return root


def config(tmp_path, **kw):
    base = dict(
        data=blob_dataset(tmp_path / "data"), out=tmp_path / "run", model="tiny", epochs=12,
        batch_size=4, lr=3e-3, crop=SIZE, device="cpu", threads=1, seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_a_data_set_of_one_image_with_one_stride_crops_is_refused_before_training(tmp_path):
    """One image makes batches of one; a 16 px crop leaves tiny's bottleneck 1x1, which
    BatchNorm cannot train on (a torch ValueError at the first step before)."""
    data = blob_dataset(tmp_path / "one", n=1)
    with pytest.raises(ConfigError, match="batches of >= 2"):
        train(config(tmp_path, data=data, crop=16, epochs=1))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_few_steps_lower_the_loss_and_write_a_loadable_model(tmp_path):
    final = train(config(tmp_path))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    losses = [h["loss"] for h in history]
    assert np.mean(losses[-3:]) < losses[0] - 0.05, losses
    model, info, _ = load_checkpoint(final)
    assert info.model.arch == "sgem_unet"
    assert info.norm.kind == "robust"  # the per-frame rule the node applies
    assert info.extra["data"]["images"] == 8


def test_turn_consistency_trains_with_two_views_per_step(tmp_path, monkeypatch):
    from irstd_ros.training import loss as loss_module

    calls = []
    real = loss_module.consistency_loss
    monkeypatch.setattr(
        train_module, "consistency_loss", lambda a, b, region=None: calls.append(region) or real(a, b, region)
    )
    final = train(config(tmp_path, consistency=1.0, epochs=6))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(calls) == 12 and history[-1]["loss"] < history[0]["loss"]  # 2 steps an epoch
    assert all(region is None for region in calls)
    _, info, _ = load_checkpoint(final)
    assert info.extra["train_config"]["consistency"] == 1.0


def test_turn_consistency_near_targets_passes_a_region(tmp_path, monkeypatch):
    from irstd_ros.training import loss as loss_module

    regions = []
    real = loss_module.consistency_loss
    monkeypatch.setattr(
        train_module, "consistency_loss", lambda a, b, region=None: regions.append(region) or real(a, b, region)
    )
    final = train(config(tmp_path, consistency=1.0, consistency_radius=4, epochs=1))
    assert regions and all(r is not None and r.dtype == torch.bool and 0 < int(r.sum()) for r in regions)
    _, info, _ = load_checkpoint(final)
    assert info.extra["train_config"]["consistency_radius"] == 4


def test_global_norm_stores_the_training_statistics(tmp_path):
    final = train(config(tmp_path, epochs=1, norm="global"))
    _, info, _ = load_checkpoint(final)
    assert info.norm.kind == "global" and 0.0 < info.norm.mean < 1.0 and info.norm.std > 0


def test_mixture_training_with_implants_generator_and_warm_start(tmp_path):
    first = train(config(tmp_path, epochs=1))
    cfg = config(
        tmp_path, out=tmp_path / "mix", epochs=2, init=first, loss="softiou+bce",
        sources=[{"root": str(tmp_path / "data"), "split": "train", "weight": 1.0, "implant_prob": 1.0}],
        samples_per_epoch=8, generator_frames=3, generator_weight=0.5,
    )
    final = train(cfg)
    _, info, _ = load_checkpoint(final)
    seen = info.extra["data"]
    assert [s["images"] for s in seen["sources"]] == [8] and seen["generator_frames"] == 3
    assert seen["samples_per_epoch"] == 8 and info.extra["train_config"]["init"] == str(first)
    history = json.loads((tmp_path / "mix" / "history.json").read_text())
    assert len(history) == 2


def test_time_budget_stops_after_the_epoch_that_passes_it(tmp_path):
    train(config(tmp_path, epochs=50, minutes=1e-6))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1


def test_unknown_loss_norm_and_source_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="valid: softiou, softiou\\+bce"):
        TrainConfig(data=tmp_path, loss="focal")
    with pytest.raises(ConfigError, match="valid: robust, global"):
        TrainConfig(data=tmp_path, norm="minmax")
    with pytest.raises(ConfigError, match="unknown data source keys"):
        train(config(tmp_path, sources=[{"root": str(tmp_path), "wieght": 1}]))


def test_resume_continues_from_the_last_epoch(tmp_path):
    train(config(tmp_path, epochs=2))
    train(config(tmp_path, epochs=3))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_partial_init_and_distillation_from_a_teacher(tmp_path):
    teacher = train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match=r"does not fit model 'lite' \(widths .*\): missing \[") as refused:
        train(config(tmp_path, out=tmp_path / "strict", model="lite", epochs=1, init=teacher))
    assert len(str(refused.value)) < 1000  # torch's own report named every tensor: 24,767 characters
    final = train(config(
        tmp_path, out=tmp_path / "lite", model="lite", epochs=1, init=teacher, init_partial=True,
        teacher=teacher, distill=1.0,
    ))
    student, info, _ = load_checkpoint(final)
    assert info.model.fusion == "add" and info.extra["train_config"]["teacher"] == str(teacher)
    assert load_checkpoint(tmp_path / "lite" / INIT_NAME)[1].model == named_config("lite")
    lite = build_model(named_config("lite"))
    init_from(lite, teacher, "lite", partial=True)
    copied, source = lite.state_dict(), load_checkpoint(teacher)[0].state_dict()
    assert torch.equal(copied["encoder.0.0.conv1.0.weight"], source["encoder.0.0.conv1.0.weight"])
    assert copied["decoder.0.0.conv1.0.weight"].shape != source["decoder.0.0.conv1.0.weight"].shape


def test_the_shipped_two_piece_model_is_a_start_for_its_own_network():
    """A user fine-tuning the shipped model (`init:` it, `model: tiny`): its two-piece
    calibration's knee is no tensor of the network trained, so it is left out (the start
    keeps the line calibration folded into the head) instead of refusing the file."""
    from irstd_ros.inference.detector import default_model_path

    shipped = default_model_path()
    source, info, _ = load_checkpoint(shipped)
    assert info.model.logit_knee  # the case: a knee the training network does not have
    model = build_model(named_config("tiny"))
    init_from(model, shipped, "tiny")
    loaded, wanted = model.state_dict(), source.state_dict()
    assert set(wanted) - set(loaded) == {"knee.knee", "knee.slope"}
    assert all(torch.equal(loaded[k], wanted[k]) for k in loaded)


def test_a_shipped_model_s_name_is_a_start_and_a_teacher(tmp_path, monkeypatch):
    """``--init fast`` / ``--teacher tiny`` name the shipped models as ``--weights`` does
    (they were taken for files of the current directory: "model file not found")."""
    from irstd_ros.inference.detector import default_model_path
    from irstd_ros.training.teachers import load_teacher

    monkeypatch.chdir(tmp_path)  # no file called "tiny" here
    model = build_model(named_config("tiny"))
    init_from(model, Path("tiny"), "tiny")
    shipped = load_checkpoint(default_model_path())[0].state_dict()
    assert torch.equal(model.state_dict()["head.weight"], shipped["head.weight"])
    norm = load_checkpoint(default_model_path())[1].norm
    teacher = load_teacher(Path("tiny"), norm, torch.device("cpu"))
    assert not teacher.training
    # as a run's teacher set too (its paths were made absolute first: "<cwd>/tiny" not found)
    from irstd_ros.training.teachers import Teachers

    assert list(Teachers([(Path("tiny"), Path("fast"))], norm, torch.device("cpu")).models) == [
        default_model_path("tiny").resolve(), default_model_path("fast").resolve()]


def test_the_shipped_two_piece_model_is_a_start_for_a_widened_network():
    """``init_widen`` from the shipped ``fast`` (two-piece calibrated) into ``fast_wide``
    was refused ("layouts differ at knee.knee"): the knee is left out as for a plain
    init, and the wide network starts out computing the shipped one's logits before it."""
    shipped = Path(__file__).resolve().parents[2] / "irstd_ros" / "weights" / "irstd_fast.safetensors"
    source, info, _ = load_checkpoint(shipped)
    assert info.model.logit_knee
    wide = build_model(named_config("fast_wide")).eval()
    init_from(wide, shipped, "fast_wide", widen=True)
    source.knee = None  # the line folded into the head, without the knee
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), source.eval()(x), atol=1e-5, rtol=1e-5)


def test_widening_init_starts_from_the_narrow_network_s_logits(tmp_path):
    narrow = train(config(tmp_path, out=tmp_path / "fast", model="fast", epochs=1))
    trained, narrow_info, _ = load_checkpoint(narrow)
    narrow_info.extra["data"] = {"root": "the narrow network's own data"}  # not the wide run's
    save_checkpoint(narrow, trained, narrow_info)
    wide = build_model(named_config("fast_wide")).eval()
    init_from(wide, narrow, "fast_wide", widen=True)
    small = load_checkpoint(narrow)[0].eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), small(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="exclude each other"):
        init_from(wide, narrow, "fast_wide", partial=True, widen=True)
    final = train(config(tmp_path, out=tmp_path / "wide", model="fast_wide", epochs=1, init=narrow, init_widen=True))
    assert load_checkpoint(final)[1].model == named_config("fast_wide")
    # the widened start is kept beside the run, computing the narrow network's logits
    start, info, _ = load_checkpoint(tmp_path / "wide" / INIT_NAME)
    assert info.model == named_config("fast_wide") and info.extra["init"] == str(narrow)
    assert info.extra["data"] == {"root": "the narrow network's own data"}  # the source's, not the run's
    with torch.no_grad():
        torch.testing.assert_close(start(x), small(x), atol=1e-5, rtol=1e-5)
    assert not (tmp_path / "fast" / INIT_NAME).exists()  # an untransformed run has none


def test_a_refused_resumption_keeps_the_run_s_transformed_start(tmp_path):
    """The start was written before the resumption was checked: a run refused for another
    init replaced the run's init.safetensors (a soup's parent) with its own start."""
    first = train(config(tmp_path, out=tmp_path / "a", epochs=1))
    other = train(config(tmp_path, out=tmp_path / "b", epochs=1, seed=3))
    kw = dict(out=tmp_path / "lite", model="lite", init_partial=True)
    train(config(tmp_path, epochs=1, init=first, **kw))
    kept = (tmp_path / "lite" / INIT_NAME).read_bytes()
    with pytest.raises(ConfigError, match="another recipe"):
        train(config(tmp_path, epochs=2, init=other, **kw))
    assert (tmp_path / "lite" / INIT_NAME).read_bytes() == kept
    (tmp_path / "lite" / INIT_NAME).write_bytes(b"marker")  # a resumption writes no start
    train(config(tmp_path, epochs=2, init=first, **kw))
    assert (tmp_path / "lite" / INIT_NAME).read_bytes() == b"marker"

def test_each_sample_is_distilled_from_its_own_source_s_teachers(tmp_path, monkeypatch):
    first = train(config(tmp_path, out=tmp_path / "a", epochs=1))
    second = train(config(tmp_path, out=tmp_path / "b", epochs=1, seed=1))
    full = [(f"t{i}", np.full((SIZE, SIZE), 200, np.uint8), np.ones((SIZE, SIZE), bool)) for i in range(2)]
    targets = str(write_dataset(tmp_path / "targets", full, {"train": ["t0", "t1"]}))
    blank = [(f"e{i}", np.full((SIZE, SIZE), 60, np.uint8), np.zeros((SIZE, SIZE), bool)) for i in range(2)]
    empty = str(write_dataset(tmp_path / "empty", blank, {"train": ["e0", "e1"]}))
    seen: list[tuple[list[int], list[float]]] = []
    masks: list[list[bool]] = []
    original_logits, original_loss = Teachers.logits, train_module.training_loss

    def spy_logits(self, img, source):
        logits, taught = original_logits(self, img, source)
        seen.append((source.tolist(), taught.tolist()))
        return logits, taught

    def spy_loss(name, logits, mask):
        masks.append(mask.flatten(1).any(1).tolist())
        return original_loss(name, logits, mask)

    monkeypatch.setattr(Teachers, "logits", spy_logits)
    monkeypatch.setattr(train_module, "training_loss", spy_loss)
    final = train(config(
        tmp_path, out=tmp_path / "s", epochs=1, init=first, teacher=[str(first), str(second)],
        sources=[{"root": targets, "implant_prob": 0.0, "teacher": []},
                 {"root": empty, "implant_prob": 0.0}],
        samples_per_epoch=16,
    ))
    sources = [s for batch, _ in seen for s in batch]
    taught = [t for _, batch in seen for t in batch]
    assert set(sources) == {0, 1}
    # the loader hands each sample's own source: targets come from source 0 only ...
    assert [s == 0 for s in sources] == [m for batch in masks for m in batch]
    # ... and source 0 named no teacher, source 1 takes the run's ensemble
    assert taught == [float(s == 1) for s in sources]
    extra = load_checkpoint(final)[1].extra
    assert extra["train_config"]["teacher"] == [str(first), str(second)]
    assert [s.get("teacher") for s in extra["data"]["sources"]] == [[], None]


def test_teacher_sets_take_a_source_s_own_else_the_run_s(tmp_path):
    data = str(blob_dataset(tmp_path / "data"))
    cfg = config(tmp_path, teacher="run.safetensors", generator_frames=1, generator_weight=0.1,
                 sources=[{"root": data}, {"root": data, "teacher": ["x.st", "y.st"]}, {"root": data, "teacher": []}],
                 samples_per_epoch=8)
    ds, _, _ = build_training_data(cfg, 0)
    run = (Path("run.safetensors"),)
    assert teacher_sets(cfg, ds) == [run, (Path("x.st"), Path("y.st")), (), run]  # the generator: the run's


def test_a_teacher_with_another_input_norm_is_refused(tmp_path):
    teacher = train(config(tmp_path, epochs=1, norm="global"))
    with pytest.raises(ConfigError, match="normalises inputs"):
        train(config(tmp_path, out=tmp_path / "s", epochs=1, teacher=teacher))
    with pytest.raises(ConfigError, match="distill"):
        config(tmp_path, distill=-1.0)


def test_resume_refuses_another_model(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match=r"another model config \(.*widths \[8, 16, 32, 64, 128\] -> "):
        train(config(tmp_path, epochs=2, model="small"))


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(data=tmp_path, schedule="step")
    with pytest.raises(ConfigError):
        TrainConfig(data=tmp_path, epochs=0)


def epoch_lrs(cfg):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_schedule_ends_at_min_lr(tmp_path):
    cfg = TrainConfig(data=tmp_path, epochs=10, lr=1e-3, min_lr=1e-5, schedule="cosine")
    lrs = epoch_lrs(cfg)
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert epoch_lrs(TrainConfig(data=tmp_path, epochs=4, lr=1e-3)) == [1e-3] * 4  # constant


def test_a_resumed_cosine_run_uses_the_uninterrupted_runs_lrs(tmp_path):
    whole = config(tmp_path, out=tmp_path / "whole", epochs=4, schedule="cosine", min_lr=1e-5)
    train(whole)
    train(config(tmp_path, epochs=4, schedule="cosine", min_lr=1e-5, max_steps=4))  # stops after epoch 2
    train(config(tmp_path, epochs=4, schedule="cosine", min_lr=1e-5))
    lrs = [[h["lr"] for h in json.loads((d / "history.json").read_text())] for d in (whole.out, tmp_path / "run")]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 4


def test_implant_overrides_are_checked_and_become_ranges():
    assert implant_config({"count": [2, 6], "snr": [4, 8]}).count == (2, 6)
    with pytest.raises(ConfigError, match="valid: .*count"):
        implant_config({"counts": [1, 2]})


def test_sensor_overrides_reach_the_augmentation():
    from irstd_ros.training.train import augment_config

    aug = augment_config(TrainConfig(data="d", out="o", sensor={"row_fpn_prob": 0.3, "row_fpn": [0.5, 1.0]}))
    assert aug.sensor.row_fpn_prob == 0.3 and aug.sensor.row_fpn == (0.5, 1.0)
    assert augment_config(TrainConfig(data="d", out="o")).sensor.row_fpn_prob == 0.0  # old recipes unchanged
    with pytest.raises(ConfigError, match="valid: .*row_fpn_prob"):
        augment_config(TrainConfig(data="d", out="o", sensor={"row_fnp_prob": 0.3}))


# --- field types and ranges: one ConfigError naming the field (YAML values arrive unchecked) ---


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("threshold", "abc", "threshold must be a number in (0, 1), got 'abc'"),
        ("threshold", 1.5, "threshold must be a number in (0, 1)"),
        ("threshold", 0.0, "threshold must be a number in (0, 1)"),
        ("lr", float("nan"), "lr must be a number > 0"),
        ("lr", "fast", "lr must be a number > 0, got 'fast'"),
        ("min_lr", -1.0, "min_lr must be a number >= 0"),
        ("distill", float("nan"), "distill must be a number >= 0"),
        ("distill", -0.5, "distill must be a number >= 0"),
        ("minutes", -1.0, "minutes must be a number > 0 or null"),
        ("minutes", float("inf"), "minutes must be a number > 0 or null"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("epochs", 2.5, "epochs must be an integer >= 1, got 2.5"),
        ("epochs", True, "epochs must be an integer >= 1, got True"),
        ("crop", -5, "crop must be an integer >= 1"),
        ("crop", 8, "crop must be >= 16 (the stride of model 'tiny')"),
        ("crop", 200, "crop must be a multiple of 16 (the stride of model 'tiny'), got 200; e.g. 192"),  # a layout never inferred on
        ("threads", 0, "threads must be an integer >= 1 or null"),
        ("threads", -1, "threads must be an integer >= 1 or null"),
        ("max_steps", 0, "max_steps must be an integer >= 1 or null"),
        ("workers", -1, "workers must be an integer >= 0"),
        ("generator_frames", -3, "generator_frames must be an integer >= 0"),
        ("generator_implant", 2.0, "generator_implant must be a number in [0, 1]"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("sources", 5, "sources must be a list of mappings"),
        ("sources", ["a"], "sources must be a list of mappings"),
        ("data", 5, "data must be a path"),
        ("data", "", "data must be a path"),
        ("out", ["runs"], "out must be a path"),
        ("init", 3, "init must be a path"),
        ("teacher", 5, "teacher must be a path or a list of paths"),
        ("teacher", [1, 2], "teacher must be a path or a list of paths"),
        ("sensor", "strong", "sensor must be a mapping"),
        ("scale", [2.0, 1.0], "scale must be [low, high]"),
        ("scale", [0.5], "scale must be [low, high]"),
        ("scale", ["a", 1], "scale must be [low, high]"),
        ("scale_prob", 1.5, "scale_prob must be a number in [0, 1]"),
        ("bf16", "yes", "bf16 must be true or false"),
        ("model", 5, "model must be a string"),
        ("model", "huge", "unknown model config 'huge'"),
        ("device", "bogus", "device must be one of auto, cpu, cuda, cuda:N, got 'bogus'"),
        ("device", "cuda:x", "device must be one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_fields_of_the_wrong_type_or_range_are_one_config_error(tmp_path, field, value, words):
    kw = {"data": tmp_path, "model": "tiny", "crop": 32, field: value}
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kw)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("lr", "1e-3", 0.001),  # PyYAML reads 1e-3 (no dot) as a string
        ("min_lr", " 1E-6 ", 1e-6),
        ("threshold", "0.3", 0.3),
        ("minutes", 80, 80.0),
        ("epochs", 40.0, 40),
        ("epochs", "1e3", 1000),
        ("threads", None, None),
        ("scale", ["0.5", 2], [0.5, 2.0]),
        ("sources", None, []),
        ("implant", None, {}),
        ("init", "", None),
    ],
)
def test_numeric_strings_and_whole_numbers_are_converted(tmp_path, field, value, expected):
    got = getattr(TrainConfig(data=tmp_path, **{field: value}), field)
    assert got == expected and type(got) is type(expected)


def test_resolve_device_refuses_unknown_names():
    assert train_module.resolve_device("cpu").type == "cpu"
    for name in ("bogus", "mps", "cuda:-1", ""):
        with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda, cuda:N"):
            train_module.resolve_device(name)


def test_resolve_device_refuses_a_missing_cuda_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert train_module.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="'cuda:3': there are 1 CUDA devices"):
        train_module.resolve_device("cuda:3")


def test_read_config_keeps_numeric_strings_for_the_config_to_convert(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"data: {tmp_path}\nlr: 1e-3\nthreshold: abc\n")
    values = train_module.read_config(path)
    assert values["lr"] == "1e-3"  # PyYAML's reading, which TrainConfig turns into 0.001
    with pytest.raises(ConfigError, match="threshold must be a number in \\(0, 1\\), got 'abc'"):
        TrainConfig(**values)
    with pytest.raises(ConfigError, match="config file not found"):
        train_module.read_config(tmp_path / "missing.yaml")


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    # shuffles, crops and flips and the turn-consistency views drawn after a resumption
    # are those of the run that went on (in the loader's process: worker processes started
    # from the test process made a later ROS test's process die; the workers' own streams,
    # which derive from the dataset's, are tested in test/data/test_datasets.py)
    kw = dict(epochs=3, consistency=1.0, workers=0)
    straight = train(config(tmp_path, out=tmp_path / "straight", **kw))
    train(config(tmp_path, out=tmp_path / "resumed", **{**kw, "epochs": 1}))
    resumed = train(config(tmp_path, out=tmp_path / "resumed", **kw))
    a, info_a, _ = load_checkpoint(straight)
    b, info_b, _ = load_checkpoint(resumed)
    losses = [[h["loss"] for h in i.extra["train_state"]["history"]] for i in (info_a, info_b)]
    assert losses[0] == losses[1]
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"implant": {"count": [1, 6]}}, "implant"),
        ({"sensor": {"row_fpn_prob": 0.2}}, "sensor"),
        ({"paste": {"gain": [0.5, 1.0]}, "generator_paste": 0.5}, "paste, generator_paste"),
        ({"scale": [0.5, 2.0], "scale_prob": 0.5}, "scale_prob"),
        ({"generator_frames": 3, "generator_weight": 0.5}, "generator_frames, generator_weight"),
    ],
)
def test_mixture_options_for_a_single_dataset_are_refused_not_ignored(tmp_path, options, named):
    with pytest.raises(ConfigError, match=f"mixture options set without a mixture: {named}; set samples_per_epoch"):
        build_training_data(config(tmp_path, **options), 0)
    ds, _, _ = build_training_data(config(tmp_path, samples_per_epoch=4, **options), 0)
    assert len(ds) == 4


def test_a_run_resumed_after_its_last_step_trains_no_further(tmp_path):
    for _ in range(2):
        _, info, _ = load_checkpoint(train(config(tmp_path, max_steps=1)))
        assert info.extra["train_state"]["step"] == 1


@pytest.mark.parametrize(
    ("options", "words"),
    [({"implant": {"count": "x"}}, "implant {'count': 'x'}: a value of the wrong type or shape"),
     ({"paste": {"count": 5}}, "paste {'count': 5}: a value of the wrong type or shape")],
)
def test_augmentation_overrides_of_the_wrong_shape_are_one_config_error(options, words):
    from irstd_ros.training.train import augment_config

    with pytest.raises(ConfigError) as info:
        augment_config(TrainConfig(data="d", out="o", samples_per_epoch=4, **options))
    assert words in str(info.value)


def test_a_config_value_no_checkpoint_can_record_is_refused_before_training(tmp_path):
    import datetime

    with pytest.raises(ConfigError, match="extra must hold plain values .*date is not JSON serializable"):
        config(tmp_path, extra={"started": datetime.date(2024, 1, 1)})  # YAML reads 2024-01-01 so
    with pytest.raises(ConfigError, match="sensor must hold plain values"):
        config(tmp_path, sensor={"row_fpn_prob": datetime.date(2024, 1, 1)})


def test_a_failed_history_write_keeps_the_previous_history(tmp_path, monkeypatch):
    train(config(tmp_path, epochs=1))
    history = tmp_path / "run" / "history.json"
    before = history.read_text()
    real = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        if self.suffix in (".json", ".tmp") and "history" in self.name:
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        train(config(tmp_path, epochs=2))
    assert history.read_text() == before and json.loads(before)
    assert [p.name for p in history.parent.iterdir() if "history" in p.name] == ["history.json"]


def test_resume_refuses_another_input_normalisation(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="trained on inputs normalised as .*knee=4.0.*this run's are .*knee=3.0"):
        train(config(tmp_path, epochs=2, knee=3.0))
    train(config(tmp_path, epochs=2))  # the same one resumes


def test_resume_refuses_other_data(tmp_path):
    # resumed on other frames, its record named them alone for the epochs done on the first
    train(config(tmp_path, epochs=1))
    other = blob_dataset(tmp_path / "other", n=5, seed=3)
    with pytest.raises(ConfigError, match=r"was trained on other data \(.*\"images\": 8\}\) than this run's \(.*other"):
        train(config(tmp_path, data=other, epochs=2))
    _, info, _ = load_checkpoint(train(config(tmp_path, epochs=2)))  # the same data resumes
    assert info.extra["data"]["images"] == 8 and len(info.extra["train_state"]["history"]) == 2


def test_resume_refuses_another_recipe(tmp_path):
    """Resumed with another lr, seed, loss or batch, the run went on as another one and its
    record claimed the new recipe for every epoch."""
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match=r"another recipe \(seed 0 -> 7, batch_size 4 -> 2, lr 0.003 -> 0.0001, "
                       r'loss "softiou" -> "softiou\+bce"\); resume it with its own, or use a new --out'):
        train(config(tmp_path, epochs=2, lr=1e-4, seed=7, loss="softiou+bce", batch_size=2))
    _, info, _ = load_checkpoint(train(config(tmp_path, epochs=2, max_steps=100, threads=2)))  # grown, same recipe
    assert len(info.extra["train_state"]["history"]) == 2


def test_resume_refuses_other_masks_and_another_worker_count(tmp_path):
    """Resumed with another mask_suffix (other labels) or worker count (other crops), the
    run went on silently and its record claimed the new setting for every epoch."""
    train(config(tmp_path, epochs=1))
    masks = tmp_path / "data" / "masks"
    for mask in list(masks.glob("*.png")):
        shutil.copy(mask, masks / f"{mask.stem}_alt.png")
    with pytest.raises(ConfigError, match=r'another recipe \(mask_suffix "" -> "_alt"\)'):
        train(config(tmp_path, epochs=2, mask_suffix="_alt"))
    with pytest.raises(ConfigError, match=r"another recipe \(workers 0 -> 2\)"):
        train(config(tmp_path, epochs=2, workers=2))

def test_bf16_off_the_cpu_is_a_warning_not_ignored_silently(tmp_path, monkeypatch, caplog):
    class Stop(Exception):
        pass

    def stop(*args):
        raise Stop

    monkeypatch.setattr(train_module, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(train_module, "build_training_data", stop)
    with caplog.at_level("WARNING", logger=train_module.__name__), pytest.raises(Stop):
        train(config(tmp_path, bf16=True))
    assert "bf16 is CPU autocast: ignored on cuda" in caplog.text


@pytest.mark.parametrize("key", ["data", "train_state", "calibration", "metrics"])
def test_extra_may_not_replace_what_the_checkpoints_record_themselves(tmp_path, key):
    # spread last into the checkpoints' extra, `data` replaced the record of the data seen
    # and `train_state` made the resume a KeyError
    with pytest.raises(ConfigError, match=f"extra may not set {key}: the checkpoints record"):
        config(tmp_path, extra={key: "x", "recipe": "mine"})
    assert config(tmp_path, extra={"recipe": "mine"}).extra == {"recipe": "mine"}


def test_the_weight_average_is_the_final_model_and_survives_a_resumption(tmp_path):
    kw = dict(epochs=3, ema=0.9)
    straight = train(config(tmp_path, out=tmp_path / "straight", **kw))
    train(config(tmp_path, out=tmp_path / "resumed", **{**kw, "epochs": 1}))
    resumed = train(config(tmp_path, out=tmp_path / "resumed", **kw))
    final, info, _ = load_checkpoint(straight)
    raw = load_checkpoint(tmp_path / "straight" / "last.safetensors")[0].state_dict()
    averaged = final.state_dict()
    assert info.extra["train_config"]["ema"] == 0.9
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # not the last step's
    assert all(torch.equal(averaged[k], v) for k, v in load_checkpoint(resumed)[0].state_dict().items())


def test_after_one_step_the_average_is_that_step_s_weights_and_statistics(tmp_path):
    final = train(config(tmp_path, epochs=1, max_steps=1, ema=0.5))
    raw = load_checkpoint(tmp_path / "run" / "last.safetensors")[0].state_dict()
    averaged = load_checkpoint(final)[0].state_dict()
    assert averaged.keys() == raw.keys()
    for key, value in averaged.items():  # BatchNorm's running statistics included
        assert torch.equal(value, raw[key]), key


def test_a_run_without_an_average_is_not_resumed_with_one(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="no weight average"):
        train(config(tmp_path, epochs=2, ema=0.99))


def test_a_run_with_an_average_resumed_without_one_says_it_drops_it(tmp_path, caplog):
    train(config(tmp_path, epochs=1, ema=0.9))
    with caplog.at_level("WARNING", logger="irstd_ros.training.train"):
        train(config(tmp_path, epochs=2))
    assert any("drops" in r.getMessage() for r in caplog.records)


def test_an_init_trained_on_other_inputs_is_a_warning_naming_both(tmp_path, caplog):
    # the start's weights see inputs on another scale: said, not silent; the run keeps its
    # own normalisation (the shipped recipe starts a robust run from the global 0.1 model)
    start = train(config(tmp_path, out=tmp_path / "start", epochs=1, max_steps=1, knee=3.0))
    with caplog.at_level("WARNING", logger=train_module.__name__):
        final = train(config(tmp_path, epochs=1, max_steps=1, init=start))
    assert "this run normalises them as" in caplog.text
    assert f"init {start} was trained on inputs normalised as InputNorm(" in caplog.text
    assert "knee=3.0" in caplog.text and "knee=4.0" in caplog.text
    assert load_checkpoint(final)[1].norm.knee == 4.0
    caplog.clear()
    with caplog.at_level("WARNING", logger=train_module.__name__):
        train(config(tmp_path, out=tmp_path / "same", epochs=1, max_steps=1, init=start, knee=3.0))
    assert "normalises them as" not in caplog.text


def test_a_kept_weight_average_is_not_resumed_with_another_decay(tmp_path):
    # the average saved as the model would mix two decays, its record claim the new one
    train(config(tmp_path, epochs=1, ema=0.9))
    with pytest.raises(ConfigError, match=r"another recipe \(ema 0.9 -> 0.99\)"):
        train(config(tmp_path, epochs=2, ema=0.99))
    _, info, _ = load_checkpoint(train(config(tmp_path, epochs=2, ema=0.9)))
    assert len(info.extra["train_state"]["history"]) == 2


def test_a_last_checkpoint_without_training_state_is_refused_not_a_key_error(tmp_path):
    # e.g. a calibrated or averaged model file copied over a run's last.safetensors
    train(config(tmp_path, epochs=1, max_steps=1))
    last = tmp_path / "run" / "last.safetensors"
    model, info, _ = load_checkpoint(last)
    extra = {k: v for k, v in info.extra.items() if k != "train_state"}
    save_checkpoint(last, model, dataclasses.replace(info, extra=extra))
    with pytest.raises(ConfigError, match="holds no training state"):
        train(config(tmp_path, epochs=2))


def test_a_resumption_takes_paths_as_the_files_they_name(tmp_path, monkeypatch):
    # data and init given relative, then absolute: one run, not "other data" or a new recipe
    start = train(config(tmp_path, out=tmp_path / "start", epochs=1, max_steps=1))
    blob_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    train(config(tmp_path, data=Path("data"), init=Path("start/model.safetensors"), epochs=1))
    _, info, _ = load_checkpoint(train(config(tmp_path, data=tmp_path / "data", init=start, epochs=2)))
    assert len(info.extra["train_state"]["history"]) == 2
    with pytest.raises(ConfigError, match="other data"):  # another folder is still refused
        train(config(tmp_path, data=blob_dataset(tmp_path / "other", n=5, seed=3), init=start, epochs=3))


def test_an_epoch_cut_by_max_steps_counts_as_done_on_resumption(tmp_path):
    # by design (TrainConfig.max_steps): checkpoints resume at epoch boundaries
    train(config(tmp_path, epochs=2, max_steps=1))  # 8 frames, batch 4: 2 steps an epoch
    _, info, _ = load_checkpoint(train(config(tmp_path, epochs=2)))
    state = info.extra["train_state"]
    assert [h["epoch"] for h in state["history"]] == [1, 2] and state["step"] == 3


def _resume_elsewhere(tmp_path, monkeypatch, other_data):
    """A run started in a/ with data, init and out given relative (data/, start.safetensors,
    run/), its last checkpoint then looked at from b/, whose data/ is ``other_data`` (a
    folder of its own, or none)."""
    a, b = tmp_path / "a", tmp_path / "b"
    blob_dataset(a / "data")
    start = train(config(tmp_path, data=a / "data", out=tmp_path / "start", epochs=1, max_steps=1))
    (a / "start.safetensors").write_bytes(start.read_bytes())
    monkeypatch.chdir(a)
    train(config(tmp_path, data=Path("data"), init=Path("start.safetensors"), out=Path("run"),
                 epochs=1, max_steps=1))
    b.mkdir()
    if other_data:
        blob_dataset(b / "data", seed=5)  # other frames, as many
        (b / "start.safetensors").write_bytes(start.read_bytes())
    monkeypatch.chdir(b)
    return a


def test_a_run_resumed_from_another_directory_finds_its_relative_paths(tmp_path, monkeypatch):
    """Its relative data and init were taken from the new directory: the same data, spelt
    from there, was refused as other data (the run's record keeps where they were given)."""
    a = _resume_elsewhere(tmp_path, monkeypatch, other_data=False)
    _, info, _ = load_checkpoint(
        train(config(tmp_path, data=Path("../a/data"), init=a / "start.safetensors",
                     out=a / "run", epochs=2, max_steps=2))
    )
    state = info.extra["train_state"]
    assert len(state["history"]) == 2 and state["cwd"] == str(tmp_path / "b")
    assert state["cwd_from_run"] == os.path.join("..", "..", "b")  # from the run's folder a/run


def test_relative_paths_that_name_other_data_from_another_directory_are_refused(tmp_path, monkeypatch):
    """The same spelling from another directory names other files: it was taken for the
    run's own data and init (both resolved from the new directory)."""
    a = _resume_elsewhere(tmp_path, monkeypatch, other_data=True)
    other = str(tmp_path / "b" / "data")
    data = re.escape(str(a / "data"))
    with pytest.raises(ConfigError, match=rf"trained on other data \(.*{data}\".*\) than this run's \(.*{re.escape(other)}"):
        train(config(tmp_path, data=Path("data"), init=Path("start.safetensors"), out=a / "run", epochs=2))
    with pytest.raises(ConfigError, match=rf"another recipe \(init \"{re.escape(str(a / 'start.safetensors'))}\" -> "):
        train(config(tmp_path, data=a / "data", init=Path("start.safetensors"), out=a / "run", epochs=2))


@pytest.mark.parametrize(("where", "up"), [(".", ""), ("sub", "../")])
def test_a_moved_checkout_resumes_with_the_relative_paths_it_was_started_with(tmp_path, monkeypatch, where, up):
    """The run's directory is recorded (train_state.cwd); moved with the checkout, that
    directory is gone, and ``data`` was resolved from the current one: resumed from the
    checkout it went on, from one of its folders (the same files spelt from there) it was
    refused as other data. The directory is also kept relative to the run's folder, which
    moved with it (train_state.cwd_from_run)."""
    a = tmp_path / "a"
    blob_dataset(a / "data")
    monkeypatch.chdir(a)
    train(config(tmp_path, data=Path("data"), out=Path("run"), epochs=1, max_steps=1))
    moved = tmp_path / "moved"
    a.rename(moved)
    (moved / where).mkdir(exist_ok=True)
    monkeypatch.chdir(moved / where)
    _, info, _ = load_checkpoint(train(config(tmp_path, data=Path(f"{up}data"), out=Path(f"{up}run"), epochs=2,
                                              max_steps=2)))
    assert len(info.extra["train_state"]["history"]) == 2
    assert info.extra["train_state"]["cwd_from_run"] == os.path.normpath(f"../{where}")


def test_a_run_folder_moved_alone_resumes_from_the_checkout(tmp_path, monkeypatch):
    """The run's folder moved out of the checkout, the checkout stayed: the directory kept
    relative to the run's folder names another one (which exists); the absolute one agrees."""
    a = tmp_path / "checkout"
    blob_dataset(a / "data")
    monkeypatch.chdir(a)
    train(config(tmp_path, data=Path("data"), out=Path("runs/x"), epochs=1, max_steps=1))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (a / "runs" / "x").rename(scratch / "x")
    _, info, _ = load_checkpoint(train(config(tmp_path, data=Path("data"), out=scratch / "x", epochs=2,
                                              max_steps=2)))
    assert len(info.extra["train_state"]["history"]) == 2


def test_a_checkpoint_without_its_directory_takes_relative_paths_from_the_current_one(tmp_path, monkeypatch):
    # written before train_state recorded its cwd: resumed from where it was started, as then
    monkeypatch.chdir(tmp_path)
    train(config(tmp_path, data=Path("data"), epochs=1, max_steps=1))
    last = tmp_path / "run" / "last.safetensors"
    model, info, tensors = load_checkpoint(last)
    state = {k: v for k, v in info.extra["train_state"].items() if k not in ("cwd", "cwd_from_run")}
    save_checkpoint(last, model, dataclasses.replace(info, extra={**info.extra, "train_state": state}),
                    tensors)
    _, info, _ = load_checkpoint(train(config(tmp_path, data=Path("data"), epochs=2, max_steps=2)))
    assert len(info.extra["train_state"]["history"]) == 2


def test_an_epoch_cut_by_max_steps_is_marked_partial_and_epochs_may_not_shrink(tmp_path):
    """The cut epoch was recorded as a whole one (train-gpu flags it); a finished run resumed
    with fewer epochs was taken, its model then claiming 1 epoch beside 2 in its history."""
    train(config(tmp_path, epochs=2, max_steps=1))  # 8 frames, batches of 4: 1 of 2 steps
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history == [{**history[0], "partial": True}] and len(history) == 1
    train(config(tmp_path, epochs=2))
    assert "partial" not in json.loads((tmp_path / "run" / "history.json").read_text())[-1]
    with pytest.raises(ConfigError, match="has trained 2 epochs, more than epochs 1: epochs may grow"):
        train(config(tmp_path, epochs=1))


def test_a_run_started_afresh_leaves_no_files_of_the_run_before(tmp_path, monkeypatch):
    """Interrupted, a --no-resume run left the old run's model.safetensors and history.json
    beside its own last.safetensors: a folder of two runs, nothing saying which is which."""
    import irstd_ros.training.train as train_module

    train(config(tmp_path, epochs=1))
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"last.safetensors", "model.safetensors", "history.json"}

    class Interrupted(Exception):
        pass

    def interrupt(*_args, **_kwargs):
        raise Interrupted

    # refused before it starts (a teacher of other inputs): the run before keeps its files
    other = train(config(tmp_path, out=tmp_path / "other", epochs=1, norm="global"))
    with pytest.raises(ConfigError, match="normalises inputs"):
        train(config(tmp_path, epochs=1, resume=False, teacher=other))
    assert (tmp_path / "run" / "model.safetensors").is_file()
    monkeypatch.setattr(train_module, "optimizer_step", interrupt)  # the first step
    with pytest.raises(Interrupted):
        train(config(tmp_path, epochs=1, resume=False))
    left = {p.name for p in (tmp_path / "run").iterdir()}
    assert not left & {"last.safetensors", "model.safetensors", "history.json"}, left


# --- the final model's metrics, recorded in its file ------------------------------------------
METRIC_KEYS = ("iou", "niou", "precision", "recall", "f1", "pd", "fa", "images", "targets", "threshold")


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_the_final_model_records_its_metrics_on_the_held_out_split(tmp_path, held_out):
    """`irstd train` recorded no metrics in its checkpoints (`irstd train-gpu` did): its
    model file now carries them, as train-gpu's do (extra.metrics, with their set)."""
    data = held_out_dataset(tmp_path / "data", held_out)
    final = train(config(tmp_path, data=data, epochs=1, threshold=0.4))
    _, info, _ = load_checkpoint(final)
    metrics = info.extra["metrics"]
    assert metrics["set"] == f"{data}:{held_out}"  # the dataset and split they were measured on
    assert all(key in metrics for key in METRIC_KEYS), metrics
    assert (metrics["images"], metrics["targets"], metrics["threshold"]) == (2, 2, 0.4)
    assert info.extra["data"] == {"root": str(data), "split": "train", "images": 6}
    _, last, _ = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert "metrics" not in last.extra  # the run's state, not a measured model


def test_the_recorded_metrics_are_train_gpu_s_measure_of_the_model(tmp_path):
    from irstd_ros.data import DatasetSpec, IRSTDDataset, find_pairs
    from irstd_ros.training.scoring import evaluate_items

    data = held_out_dataset(tmp_path / "data")
    model, info, _ = load_checkpoint(train(config(tmp_path, data=data, epochs=2)))
    items = IRSTDDataset(find_pairs(DatasetSpec(data, "test"))).items
    again = evaluate_items(model, items, info.norm, info.threshold, torch.device("cpu"), model.config.stride)
    recorded = info.extra["metrics"]
    assert {k: recorded[k] for k in METRIC_KEYS} == {k: again[k] for k in METRIC_KEYS}


@pytest.mark.parametrize(("held_out", "eval_split"), [("test", "none"), ("test", None), (None, "auto")])
def test_no_evaluation_records_no_metrics(tmp_path, held_out, eval_split):
    """eval_split none (YAML null), or auto on data without a held-out list."""
    data = held_out_dataset(tmp_path / "data", held_out) if held_out else blob_dataset(tmp_path / "data")
    cfg = config(tmp_path, data=data, epochs=1, eval_split=eval_split)
    assert cfg.eval_split == (None if eval_split != "auto" else "auto")
    _, info, _ = load_checkpoint(train(cfg))
    assert "metrics" not in info.extra


def test_auto_never_evaluates_on_the_training_split(tmp_path):
    data = held_out_dataset(tmp_path / "data")
    assert train_module.evaluation_split(config(tmp_path, data=data)) == "test"
    assert train_module.evaluation_split(config(tmp_path, data=data, split="test")) is None
    with pytest.raises(ConfigError, match="eval_split 'train' .* shares 6 frames .* with the training data"):
        train_module.evaluation_split(config(tmp_path, data=data, eval_split="train"))


def _listed_dataset(root, lists, split_dir="."):
    """:func:`blob_dataset` (frames 000-007) with the split lists ``lists`` (name: frame numbers)."""
    blob_dataset(root)
    (root / split_dir).mkdir(exist_ok=True)
    for name, frames in lists.items():
        (root / split_dir / f"{name}.txt").write_text("".join(f"{i:03d}\n" for i in frames))
    return root


@pytest.mark.parametrize(
    ("split_dir", "lists", "split", "expected"),
    [
        ("img_idx", {"train_NUDT-SIRST": range(6), "test_NUDT-SIRST": (6, 7), "test_SIRST3": (0, 7)},
         "train_NUDT-SIRST", "test_NUDT-SIRST"),  # BasicIRSTD: the held-out list of the same dataset
        ("idx_427", {"trainval": range(6), "test": (6, 7)}, "idx_427/trainval", "idx_427/test"),  # SIRST-v1
        ("splits", {"train": range(6), "val": (6, 7)}, "train", "val"),  # SIRST-v2
    ],
)
def test_auto_finds_the_held_out_list_matching_the_training_list(tmp_path, split_dir, lists, split, expected, caplog):
    """`irstd train --split train_NUDT-SIRST` (BasicIRSTD's img_idx) evaluated nothing, silently:
    auto knew lists named test and val only."""
    data = _listed_dataset(tmp_path / "data", lists, split_dir)
    with caplog.at_level("WARNING", logger=train_module.__name__):
        assert train_module.evaluation_split(config(tmp_path, data=data, split=split)) == expected
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("lists", "split", "why"),
    [
        ({"train_NUDT-SIRST": range(6), "test_SIRST3": (6, 7)}, "train_NUDT-SIRST",
         "none of the held-out lists of {data} (test_SIRST3) matches the training split 'train_NUDT-SIRST'"),
        ({"train": range(6)}, "train", "{data} has no held-out list (a list named test* or val*)"),
        ({"train": range(6), "val": (6, 7), "trainval": range(8)}, "trainval",
         "'val' shares 2 frames (first: 006) with the training data: its metrics would be measured on frames "
         "the model trained on"),
        ({"train": range(6), "test": (6, 7)}, "all", "'test' shares 2 frames (first: 006) with the training data"),
    ],
)
def test_auto_finding_no_held_out_list_says_why(tmp_path, lists, split, why, caplog):
    """SIRST-v2's trainval holds its val, `all` every frame: auto scored the model on frames
    it trained on and recorded those figures as its metrics."""
    data = _listed_dataset(tmp_path / "data", lists)
    with caplog.at_level("WARNING", logger=train_module.__name__):
        assert train_module.evaluation_split(config(tmp_path, data=data, split=split)) is None
    assert "eval_split auto: no evaluation, no metrics recorded: " + why.format(data=data) in caplog.text


def test_a_training_split_holding_the_held_out_frames_records_no_metrics(tmp_path):
    data = _listed_dataset(tmp_path / "data", {"train": range(6), "val": (6, 7), "trainval": range(8)})
    _, info, _ = load_checkpoint(train(config(tmp_path, data=data, split="trainval", epochs=1)))
    assert "metrics" not in info.extra


@pytest.mark.parametrize(("split", "eval_split", "shared"), [("trainval", "val", "2 frames (first: 006)"),
                                                              ("all", "test", "2 frames (first: 006)"),
                                                              ("train", "trainval", "6 frames (first: 000)")])
def test_a_given_eval_split_sharing_training_frames_is_refused_before_any_epoch(tmp_path, split, eval_split, shared):
    data = _listed_dataset(tmp_path / "data", {"train": range(6), "val": (6, 7), "test": (6, 7),
                                               "trainval": range(8)})
    with pytest.raises(ConfigError) as exc:
        train(config(tmp_path, data=data, split=split, eval_split=eval_split))
    assert str(exc.value).startswith(
        f"eval_split {eval_split!r} of {data} shares {shared} with the training data (split {split!r}): its "
        "metrics would be measured on frames the model trained on"), exc.value
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_a_mixture_s_sources_are_its_training_frames(tmp_path):
    data = _listed_dataset(tmp_path / "data", {"train": range(6), "test": (6, 7), "some": (0, 7)})
    mixture = dict(sources=[{"root": str(data), "split": "some"}], samples_per_epoch=4)
    assert train_module.evaluation_split(config(tmp_path, data=data, eval_split="auto", **mixture)) is None
    with pytest.raises(ConfigError, match=r"shares 1 frame \(first: 007\) with the training data \(its sources\)"):
        train_module.evaluation_split(config(tmp_path, data=data, eval_split="test", **mixture))


def test_a_missing_evaluation_split_fails_before_any_epoch(tmp_path):
    from irstd_ros.errors import DatasetError

    with pytest.raises(DatasetError, match="split list 'val' not found"):
        train(config(tmp_path, data=held_out_dataset(tmp_path / "data"), eval_split="val"))
    assert not (tmp_path / "run").exists()


def test_an_evaluation_cut_short_keeps_the_final_weights(tmp_path, monkeypatch):
    from irstd_ros.training import scoring

    def cut_off(*args, **kwargs):
        raise TimeoutError("the session's time limit")

    monkeypatch.setattr(scoring, "evaluate_items", cut_off)
    with pytest.raises(TimeoutError):
        train(config(tmp_path, data=held_out_dataset(tmp_path / "data"), epochs=1))
    _, info, _ = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert "metrics" not in info.extra
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1]


@pytest.mark.parametrize(("free_mib", "expected"), [(64, 0), (300, 2), (2048, 8)])
def test_data_workers_are_as_many_as_the_shared_memory_holds(free_mib, expected, monkeypatch, caplog):
    """Docker's default /dev/shm (64 MiB) against batches of 64 crops of 256 px (32 MiB):
    8 workers died of a bus error or hung in the first epoch; fewer are taken, said once."""
    import os
    from types import SimpleNamespace

    from irstd_ros.training import train as train_module

    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=free_mib * 256, f_frsize=4096))
    with caplog.at_level("WARNING", logger=train_module.log.name):
        assert train_module.loader_workers(8, 32 << 20) == expected
    assert ("docker run --shm-size" in caplog.text) == (expected < 8)


def test_data_workers_stand_where_there_is_no_shared_memory_folder(monkeypatch):
    import os

    from irstd_ros.training import train as train_module

    def missing(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(os, "statvfs", missing)
    assert train_module.loader_workers(8, 32 << 20) == 8
    assert train_module.loader_workers(0, 32 << 20) == 0
