import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from irstd_ros.checkpoint import (
    METADATA_FIELDS,
    METADATA_KEY,
    CheckpointInfo,
    InputNorm,
    load_checkpoint,
    read_info,
    save_checkpoint,
)
from irstd_ros.core.constants import CANDIDATE_THRESHOLD, GATED_THRESHOLD
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.models import build_model, named_config


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = build_model(named_config("tiny"))
    info = CheckpointInfo(named_config("tiny"), InputNorm(0.2, 0.1), 0.4, {"metrics": {"iou": 0.5}})
    return save_checkpoint(tmp_path / "m.safetensors", model, info), model


def test_round_trip_keeps_weights_and_config(tiny_ckpt):
    path, model = tiny_ckpt
    loaded, info, extra = load_checkpoint(path)
    assert info.model == named_config("tiny")
    assert info.norm == InputNorm(0.2, 0.1)
    assert info.threshold == 0.4
    assert info.extra["metrics"]["iou"] == 0.5
    assert extra == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_a_saved_checkpoint_is_readable_as_any_new_file_is(tiny_ckpt, tmp_path):
    """safetensors writes its files 0600; a checkpoint gets the umask's usual mode."""
    path, _ = tiny_ckpt
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    assert path.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tiny_ckpt, tmp_path):
    path, _ = tiny_ckpt
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(bad)


def test_garbage_and_pickle_files_are_refused(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, bad)  # a pickle: must never be unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(bad)


def test_file_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no irstd_ros configuration"):
        read_info(path)


def test_mismatched_architecture_is_named(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(CheckpointError, match="holds architecture 'sgem_unet', expected 'other'"):
        load_checkpoint(path, expect_arch="other")


def test_weights_that_do_not_fit_the_config(tmp_path):
    small = build_model(named_config("small"))
    info = CheckpointInfo(named_config("tiny"))
    path = tmp_path / "lie.safetensors"
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: info.to_json()})
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(path)


def test_integer_tensors_where_weights_are_floats_are_refused(tiny_ckpt, tmp_path):
    """A state dict of the right names and shapes but integer weights (an int8-quantised
    export) was cast into the float parameters silently; half precision still loads."""
    path, model = tiny_ckpt
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = (state[name] * 100).to(torch.int8)
    foreign = tmp_path / "int8.safetensors"
    save_file(state, str(foreign), metadata={METADATA_KEY: read_info(path).to_json()})
    with pytest.raises(CheckpointError, match=rf"int8\.safetensors does not match .*wrong dtype \['{name} \(torch\.int8\)'\]"):
        load_checkpoint(foreign)


def test_invalid_metadata_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps({"x": 1})})
    with pytest.raises(CheckpointError, match="invalid configuration"):
        read_info(path)


def test_tracker_thresholds_are_the_checkpoints_own_and_saved_only_when_set(tmp_path):
    model = build_model(named_config("tiny"))
    plain = CheckpointInfo(named_config("tiny"))
    assert plain.own_tracking_thresholds() == (CANDIDATE_THRESHOLD, GATED_THRESHOLD)
    assert "candidate_threshold" not in json.loads(plain.to_json())  # older files unchanged
    own = CheckpointInfo(named_config("tiny"), candidate_threshold=0.53, gated_threshold=0.41)
    info = read_info(save_checkpoint(tmp_path / "m.safetensors", model, own))
    assert info.own_tracking_thresholds() == (0.53, 0.41)
    # < 0: the checkpoint's own; 0: off; > 0: as given
    assert info.tracking_thresholds() == (0.53, 0.41)
    assert info.tracking_thresholds(0.0, -1.0) == (None, 0.41)
    assert info.tracking_thresholds(0.7, 0.0) == (0.7, None)
    assert plain.tracking_thresholds(-1.0, 0.1) == (CANDIDATE_THRESHOLD, 0.1)
    with pytest.raises(ConfigError, match="gated threshold 0.41 must be below the candidate threshold 0.3"):
        info.tracking_thresholds(0.3, -1.0)


def test_detection_threshold_below_zero_is_the_checkpoints_own():
    info = CheckpointInfo(named_config("tiny"), threshold=0.534)
    assert info.detection_threshold() == 0.534
    assert info.detection_threshold(-0.5) == 0.534
    assert info.detection_threshold(0.3) == 0.3
    assert info.detection_threshold(0.0) == 0.0  # 0 is a threshold here, not "off"


def _with_config(tmp_path, name, **changes):
    """A tiny checkpoint whose metadata JSON has ``changes`` applied to it."""
    data = json.loads(CheckpointInfo(named_config("tiny"), threshold=0.4).to_json()) | changes
    tensors = {k: v.contiguous() for k, v in build_model(named_config("tiny")).state_dict().items()}
    path = tmp_path / name
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(data)})
    return path


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", 1.5), ("threshold", 0.0), ("threshold", 1.0), ("threshold", -0.2),
     ("threshold", float("nan")), ("candidate_threshold", 1.2), ("gated_threshold", 0.0)],
)
def test_thresholds_outside_zero_one_are_refused_naming_the_file(tmp_path, field, value):
    path = _with_config(tmp_path, "thr.safetensors", **{field: value})
    with pytest.raises(CheckpointError, match=rf"thr\.safetensors has an invalid configuration: {field} .*"
                                              r"must be a probability in \(0, 1\)"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="must be a probability"):
        CheckpointInfo.from_json(json.dumps(json.loads(CheckpointInfo(named_config("tiny")).to_json())
                                            | {field: value}))


@pytest.mark.parametrize(
    "changes",
    [{"candidate_threshold": 0.3, "gated_threshold": 0.3}, {"candidate_threshold": 0.3, "gated_threshold": 0.5},
     {"candidate_threshold": GATED_THRESHOLD / 2}],  # below the default gated one
)
def test_a_gated_threshold_not_below_the_candidate_one_is_refused_at_load(tmp_path, changes):
    """It loaded, and every node start with the model's own thresholds was then refused."""
    path = _with_config(tmp_path, "trk.safetensors", **changes)
    with pytest.raises(CheckpointError, match=r"trk\.safetensors has an invalid configuration: "
                                              r"gated_threshold .* must be below candidate_threshold"):
        load_checkpoint(path)


def test_a_format_newer_than_this_code_is_refused(tmp_path):
    path = _with_config(tmp_path, "new.safetensors", format=99)
    with pytest.raises(CheckpointError, match=r"new\.safetensors was written by a newer irstd_ros "
                                              r"\(format 99, this reads <= 1\)"):
        read_info(path)
    for bad in ("1", None, 1.5):
        with pytest.raises(CheckpointError, match="invalid configuration: format must be an integer"):
            read_info(_with_config(tmp_path, "odd.safetensors", format=bad))
    assert read_info(_with_config(tmp_path, "old.safetensors", format=1)).threshold == 0.4
    data = json.loads(CheckpointInfo(named_config("tiny")).to_json())
    del data["format"]  # files before the key: read as this format
    assert CheckpointInfo.from_json(json.dumps(data)).threshold == 0.5


def test_a_format_below_one_is_refused(tmp_path):
    for bad in (0, -7):
        with pytest.raises(CheckpointError, match=rf"invalid configuration: format must be >= 1, got {bad}$"):
            read_info(_with_config(tmp_path, "old.safetensors", format=bad))


def test_unknown_metadata_keys_are_refused_listing_the_valid_ones(tmp_path):
    """A misspelt ``treshold`` loaded with the default threshold 0.5, without a word."""
    path = _with_config(tmp_path, "typo.safetensors", treshold=0.9)
    with pytest.raises(CheckpointError, match=r"typo\.safetensors has an invalid configuration: unknown "
                                              r"checkpoint metadata keys \['treshold'\] \(did you mean "
                                              r"'treshold' -> 'threshold'\?\); valid: format, model, norm, "
                                              r"threshold, candidate_threshold, gated_threshold, extra$"):
        read_info(path)
    # every key the writer writes is a known one
    info = CheckpointInfo(named_config("tiny"), candidate_threshold=0.6, gated_threshold=0.3,
                          extra={"metrics": {}})
    assert set(json.loads(info.to_json())) == set(METADATA_FIELDS)
    assert CheckpointInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"norm": {"mean": 0.1, "gamma": 2}}, r"unknown input normalisation keys \['gamma'\].*; "
                                            r"valid: mean, std, kind, knee, background$"),
     ({"norm": "robust"}, r"expected a JSON object for input normalisation, got str$"),
     ({"norm": [0.1, 0.2]}, r"expected a JSON object for input normalisation, got list$"),
     ({"model": "tiny"}, r"expected a JSON object for model config, got str$"),
     ({"model": None}, r"expected a JSON object for model config, got NoneType$")],
)
def test_a_norm_or_model_that_is_not_a_known_object_is_refused_clearly(tmp_path, changes, message):
    """``norm`` with an unknown key was "unexpected keyword argument 'gamma'", no valid keys;
    ``"model": "tiny"`` was "unknown model config keys ['i', 'n', 't', 'y']"."""
    with pytest.raises(CheckpointError, match=r"bad\.safetensors has an invalid configuration: " + message):
        read_info(_with_config(tmp_path, "bad.safetensors", **changes))


def test_a_huge_sgem_width_is_refused_at_once(tmp_path):
    """E3 = 10**12 + 1 with 2 heads: the message listed E3's divisors by trying every number
    up to E3 (hours); widths beyond MAX_WIDTH are now refused before anything is listed."""
    model = CheckpointInfo(named_config("tiny")).model.to_dict()
    model |= {"widths": [8, 16, 10**12 + 1, 64, 128], "sgem_heads": 2}
    with pytest.raises(CheckpointError, match=r"huge\.safetensors has an invalid configuration: "
                                              r"widths must be at most 65536 each"):
        read_info(_with_config(tmp_path, "huge.safetensors", model=model))


def test_every_shipped_and_candidate_checkpoint_still_loads():
    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "irstd_ros" / "weights").glob("*.safetensors"))
    paths += sorted((root / "candidates").glob("*.safetensors"))
    assert len(paths) >= 2
    for path in paths:
        _, info, _ = load_checkpoint(path)
        assert 0 < info.threshold < 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tiny_ckpt, tmp_path, bad):
    path, model = tiny_ckpt
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name].view(-1)[1] = bad
    broken = tmp_path / "diverged.safetensors"
    save_file(state, str(broken), metadata={METADATA_KEY: read_info(path).to_json()})
    with pytest.raises(CheckpointError, match=rf"diverged\.safetensors has non-finite values in tensor {name}$"):
        load_checkpoint(broken)


def test_non_finite_extra_tensors_are_refused_and_half_precision_is_checked(tmp_path):
    model = build_model(named_config("tiny")).half()
    info = CheckpointInfo(named_config("tiny"))
    loaded, _, extra = load_checkpoint(save_checkpoint(tmp_path / "ok.safetensors", model, info,
                                                       {"opt/0/step": torch.tensor(3.0)}))
    assert extra["opt/0/step"] == 3.0
    # a file written before writes were checked: the loader still refuses it
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["extra/opt/0/exp_avg"] = torch.tensor([1.0, float("inf")])
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={METADATA_KEY: info.to_json()})
    with pytest.raises(CheckpointError, match="non-finite values in tensor extra/opt/0/exp_avg"):
        load_checkpoint(tmp_path / "bad.safetensors")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "half.safetensors"), metadata={METADATA_KEY: info.to_json()})
    with pytest.raises(CheckpointError, match="half.safetensors has non-finite values"):
        load_checkpoint(tmp_path / "half.safetensors")


@pytest.mark.parametrize("where", ["weights", "extra", "half"])
def test_non_finite_tensors_are_not_written_and_the_old_file_stays(tiny_ckpt, where):
    """A diverged epoch replaced last.safetensors with a file the loader refuses (the run
    could not resume), as did a half-precision copy whose values overflow to inf."""
    path, model = tiny_ckpt
    before = path.read_bytes()
    info = read_info(path)
    extra = {"opt/0/step": torch.tensor(3.0)}
    if where == "half":
        model = build_model(named_config("tiny"))
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = 1e6  # finite in fp32, inf in fp16
        model = model.half()
        bad = next(iter(model.state_dict()))
    elif where == "extra":
        extra["opt/0/exp_avg"] = torch.tensor([1.0, float("nan")])
        bad = "extra/opt/0/exp_avg"
    else:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
        bad = next(iter(model.state_dict()))
    with pytest.raises(CheckpointError, match=rf"^cannot write model file {re.escape(str(path))}: "
                                              rf"non-finite values in tensor {re.escape(bad)}$"):
        save_checkpoint(path, model, info, extra)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    load_checkpoint(path)


def test_a_failed_write_is_a_checkpoint_error_and_keeps_the_old_file(tiny_ckpt, monkeypatch):
    import safetensors.torch

    from irstd_ros import checkpoint

    path, model = tiny_ckpt
    before = path.read_bytes()

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:  # a partial file, then the failure
            f.write(b"partial")
        raise safetensors.SafetensorError("Error while serializing: I/O error: disk full")

    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    with pytest.raises(CheckpointError, match=rf"cannot write model file {path}: .*disk full"):
        save_checkpoint(path, model, CheckpointInfo(named_config("tiny")))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .tmp left


def test_writing_where_no_file_can_be_is_a_checkpoint_error(tmp_path):
    model = build_model(named_config("tiny"))
    info = CheckpointInfo(named_config("tiny"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="cannot write model file .*file/sub/m.safetensors"):
        save_checkpoint(tmp_path / "file" / "sub" / "m.safetensors", model, info)  # parent is a file
    proc = Path("/proc")
    if proc.is_dir():  # writable to os.access as root, yet no file can be made there
        with pytest.raises(CheckpointError, match="cannot write model file /proc/irstd_test.safetensors"):
            save_checkpoint(proc / "irstd_test.safetensors", model, info)


def test_a_threshold_outside_zero_one_is_not_written(tmp_path):
    model = build_model(named_config("tiny"))
    with pytest.raises(CheckpointError, match="cannot write model file .*threshold 1.5 must be a probability"):
        save_checkpoint(tmp_path / "m.safetensors", model, CheckpointInfo(named_config("tiny"), threshold=1.5))
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sgem_heads", 3, "sgem_heads must divide the SGEM's width .*valid: 1, 2, 4, 8, 16, 32"),
        ("sgem_heads", 0, "sgem_heads must divide"),
        ("enc_blocks", [1, 0, 1, 1, 1], "enc_blocks must be 5 whole numbers >= 1"),
        ("widths", [8.0, 16, 32, 64, 128], "widths must be 5 whole numbers >= 1"),
        ("refine", 8.5, "refine must be 0"),
        ("logit_knee", "no", "logit_knee must be true or false"),
        ("arch", "unet", "unknown architecture 'unet'; valid: sgem_unet"),
    ],
)
def test_model_configs_torch_cannot_build_are_refused_naming_the_file(tmp_path, field, value, message):
    """Each failed in torch (ValueError, ZeroDivisionError, TypeError) or as a ConfigError
    without the file's name; now read_info and load_checkpoint refuse it, naming the file."""
    tensors = {k: v.contiguous() for k, v in build_model(named_config("tiny")).state_dict().items()}
    data = json.loads(CheckpointInfo(named_config("tiny")).to_json())
    data["model"][field] = value
    path = tmp_path / "odd.safetensors"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(data)})
    for read in (read_info, load_checkpoint):
        with pytest.raises(CheckpointError, match=f"odd.safetensors has an invalid configuration: {message}"):
            read(path)


def test_extra_that_is_not_an_object_is_refused(tmp_path):
    """A list under ``extra`` was read, and ``irstd eval`` then failed on ``extra.get``."""
    path = tmp_path / "x.safetensors"
    data = json.loads(CheckpointInfo(named_config("tiny")).to_json()) | {"extra": [1]}
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(data)})
    with pytest.raises(CheckpointError, match="invalid configuration: extra must be a JSON object"):
        read_info(path)


def test_metadata_nested_too_deep_for_json_is_an_invalid_configuration(tmp_path):
    """A metadata JSON nested 100000 deep raised RecursionError, a traceback from ``irstd``."""
    path = tmp_path / "deep.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(CheckpointError, match="deep.safetensors has an invalid configuration"):
        read_info(path)


def test_a_config_claiming_huge_widths_allocates_nothing_before_the_weights_are_compared(tmp_path):
    """A file of a few bytes whose config claims widths of 2**16 channels (the most a
    config may have): the network was built at that size before its shapes were compared
    (a RuntimeError from torch's allocator, or the process killed for memory); now only
    the file's tensors are held."""
    data = json.loads(CheckpointInfo(named_config("tiny")).to_json())
    data["model"] |= {"widths": [1 << 16] * 5, "sgem_heads": 1}
    path = tmp_path / "huge.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(data)})
    with pytest.raises(CheckpointError, match="huge.safetensors does not match its config"):
        load_checkpoint(path)


def test_a_config_that_is_not_the_network_s_is_refused_when_written(tmp_path):
    """A `tiny` network saved under the `lite` config was written, and refused only when
    loaded (by the node, later): the writer says so and leaves nothing."""
    model = build_model(named_config("tiny"))
    info = CheckpointInfo(named_config("lite"), InputNorm(0.2, 0.1), 0.4, {})
    with pytest.raises(CheckpointError, match=r"cannot write model file .*m\.safetensors: its config .* is not "
                                              r"the network's own"):
        save_checkpoint(tmp_path / "m.safetensors", model, info)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_network_without_its_config_is_checked_by_its_weights_when_written(tmp_path):
    """A wrapper (DDP's or an average's ``module.`` keys) or a module without ``config``
    skipped the check: its file was written and refused only when loaded."""
    from torch.optim.swa_utils import AveragedModel

    cfg = named_config("tiny")
    info = CheckpointInfo(cfg, InputNorm(0.2, 0.1), 0.4, {})
    wrapped = AveragedModel(build_model(cfg))  # keys module.*, n_averaged
    with pytest.raises(CheckpointError, match=r"cannot write model file .*w\.safetensors: its weights do not fit "
                                              r"its config sgem_unet .*unexpected \['module\."):
        save_checkpoint(tmp_path / "w.safetensors", wrapped, info)
    other = build_model(named_config("fast"))
    del other.config  # a foreign module of another shape
    with pytest.raises(CheckpointError, match="its weights do not fit"):
        save_checkpoint(tmp_path / "w.safetensors", other, info)
    assert not (tmp_path / "w.safetensors").exists()
    plain = build_model(cfg)
    del plain.config  # the right weights without the attribute: written and loaded back
    save_checkpoint(tmp_path / "w.safetensors", plain, info)
    assert load_checkpoint(tmp_path / "w.safetensors")[1].model == cfg
