#!/usr/bin/env bash
# One device call that turns a lent GPU into results (docs/backends.md, "GPU session"):
#   env          nvidia-smi, torch / CUDA versions, packages, ROS-free imports
#   pytest_gpu   pytest -m "gpu or tensorrt" (cuda backend parity: fp16, bf16, CUDA graphs,
#                torch.compile; where torch_tensorrt imports, the TensorRT engine build -> save ->
#                load parity, FP16 at 640x512 included; skipped without it)
#   bench        cuda fp32/fp16/bf16, CUDA graphs, torch.compile x {paper, shipped} x
#                {256x256, 640x512, 1280x1024}: p50/p99 ms, FPS, peak GPU memory
#   probe        the paper recipe (batch 8, lr 1e-4) for a few hundred steps: its epoch time
#   train        the paper network on the pack for the time left (recipe large by default),
#                then NUDT-SIRST test at full resolution; the FP16 checkpoint comes back split
# Each step is time-boxed with `timeout`; a failed step does not stop the others. The total
# stays under IRSTD_GPU_BUDGET_S (default 540 s): the training gets what the others left.
#
# $OUT (set by the device tool; default out/gpu_session) receives at most 8 files:
#   summary.json  bench.json  logs.tar.gz  model_fp16.safetensors.partNN (join: cat ... > ...)
#
# Usage:  bash scripts/gpu_session.sh            on the device machine (python3 there)
#         bash scripts/gpu_session.sh --check    here, with the call's knobs, before asking for
#                                                the device: what the call's preflight refuses,
#                                                and the size of the tree plus the carried pack
#         bash scripts/gpu_session.sh --dry-run  here: CPU, tiny model and data, seconds per step
#                                                (or IRSTD_GPU_DRY_RUN=1)
# The preflight (tools/gpu_session.py preflight) runs first on the device too: an unknown
# IRSTD_GPU_* variable or step name, a bad training flag, a missing or old pack, a pack group
# it lacks or a missing IRSTD_GPU_INIT end the call in seconds (exit 2), not after the steps.
# Knobs: IRSTD_GPU_BUDGET_S, IRSTD_GPU_RECIPE (large|paper), IRSTD_GPU_COMPILE (1: compile the
# training network), IRSTD_GPU_GROUPS (pack groups to train on, comma-separated; default
# nudt_train), IRSTD_GPU_INIT (a checkpoint to start the training from; carry it),
# IRSTD_GPU_MODEL (the network to train, a named config; default paper: the shipped tiny from
# candidates/irstd_tiny_0.6.safetensors with IRSTD_GPU_INIT, say),
# IRSTD_GPU_EMA (a decay per step, e.g. 0.999: the model is the moving average of the weights,
# the raw weights are scored beside it),
# IRSTD_GPU_TRAIN_ARGS (more flags of the training, space-separated, e.g. "--lr 2e-4 --loss
# softiou+bce"; the preflight reads them as the training would; not --minutes: the budget's),
# IRSTD_GPU_TRAIN_CONFIG (a YAML of irstd train, e.g. config/train/gpu_tiny_recipe.yaml: the CPU
# recipe with teachers, implantation and the generator, its sources read from the pack; then the
# GPU trainer's knobs MODEL, INIT, GROUPS, EVAL, EMA, RECIPE, COMPILE do not apply and the probe
# is skipped; IRSTD_GPU_TRAIN_ARGS go to irstd train),
# IRSTD_GPU_EVAL (the pack group scored after the training, default nudt_test; none: none, for a
# pack made with irstd pack --no-nudt-test),
# IRSTD_GPU_BENCH_MODELS, IRSTD_GPU_BENCH_SIZES, IRSTD_GPU_BENCH_VARIANTS (the bench's --models,
# --sizes, --variants: a few cells instead of all; e.g. paper, 640x512,1280x1024, fp16+pad8+graphs),
# IRSTD_GPU_SKIP (steps not to run, comma-separated, e.g. probe,bench: the training gets their time),
# IRSTD_GPU_PACK (default out/pack/irstd_pack.npz), IRSTD_GPU_WORK, PYTHON.
set -u -o pipefail

DRY=${IRSTD_GPU_DRY_RUN:-0} CHECK=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    --check) CHECK=1 DRY=0 ;;
    "") ;;
    *) echo "gpu_session: unknown argument '$1' (--dry-run, --check or none)" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/gpu_session}
WORK=${IRSTD_GPU_WORK:-/tmp/irstd_gpu_session}
LOGS=$WORK/logs
BUDGET=${IRSTD_GPU_BUDGET_S:-540}
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]] || (( BUDGET < 60 || BUDGET > 570 )); then
    # whole seconds: the steps' arithmetic is bash's; above 570 nothing is left of the call's 600 s
    echo "gpu_session: IRSTD_GPU_BUDGET_S must be whole seconds in [60, 570], got '$BUDGET'" >&2
    exit 2
fi
RECIPE=${IRSTD_GPU_RECIPE:-large}
PACK=${IRSTD_GPU_PACK:-$ROOT/out/pack/irstd_pack.npz}
SKIP=${IRSTD_GPU_SKIP:-}
SKIP=",${SKIP// /},"  # "probe, bench" too
if [[ -z "${PYTHON:-}" ]]; then
    if [[ "$DRY$CHECK" != 00 && -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

START=$(date +%s)
if [[ "$CHECK" == 0 ]]; then
    rm -rf "$WORK"
    mkdir -p "$OUT" "$LOGS"
    # this script's own results of an earlier run (a kept $OUT here) must not pass for this run's
    "$PYTHON" -m irstd_ros.tools.gpu_session clear-results --out "$OUT" \
        || { echo "gpu_session: could not clear an earlier call's results from $OUT" >&2; exit 2; }
fi

# Extra pure-Python wheels (scripts/gpu_wheels.sh; carried as .whl): installed aside, never over torch.
if [[ "$CHECK" == 0 ]] && compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$ROOT"/.whl/*.whl >"$LOGS/wheels.log" 2>&1 \
        && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }

# step NAME TIMEOUT_S COMMAND...: run time-boxed, log to $LOGS/NAME.log, record rc and seconds
step() {
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s) rc
    if [[ "$SKIP" == *",$name,"* ]]; then
        echo "== $name: skipped (IRSTD_GPU_SKIP)"
        printf '%s\t%s\t%s\t%s\n' "$name" 125 0 "$limit" >>"$WORK/steps.tsv"
        return 0
    fi
    if (( limit < 5 )); then
        echo "== $name: skipped (no time left)"
        printf '%s\t%s\t%s\t%s\n' "$name" 125 0 "$limit" >>"$WORK/steps.tsv"
        return 0
    fi
    echo "== $name (limit ${limit}s, $(elapsed)s elapsed)"
    timeout -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" $(( $(date +%s) - t0 )) "$limit" >>"$WORK/steps.tsv"
    echo "   rc=$rc in $(( $(date +%s) - t0 ))s"; tail -n 3 "$LOGS/$name.log" | sed 's/^/   | /'
    return 0
}

if [[ "$DRY" == 1 ]]; then
    DEV=cpu
    PACK=$WORK/pack.npz
    PYTEST_PATHS=(test/inference/backends/test_torch_cuda.py)
    BENCH_ARGS=(--dry-run)
    PROBE_ARGS=(--model tiny --crop 32 --batch-size 4 --max-steps 3 --threads 1)
    TRAIN_ARGS=(--model tiny --crop 32 --batch-size 4 --epochs 4 --threads 1 --minutes 0.05)
    export IRSTD_GPU_PART_BYTES=$(( 512 * 1024 ))
    T_ENV=60 T_PYTEST=60 T_BENCH=60 T_PROBE=60 RESERVE=20
else
    DEV=cuda
    PYTEST_PATHS=(test/inference test/training test/data test/evaluation test/models)
    BENCH_ARGS=(--device cuda --budget 0.5 --deadline-s 110)
    [[ -n "${IRSTD_GPU_BENCH_MODELS:-}" ]] && BENCH_ARGS+=(--models "$IRSTD_GPU_BENCH_MODELS")
    [[ -n "${IRSTD_GPU_BENCH_SIZES:-}" ]] && BENCH_ARGS+=(--sizes "$IRSTD_GPU_BENCH_SIZES")
    [[ -n "${IRSTD_GPU_BENCH_VARIANTS:-}" ]] && BENCH_ARGS+=(--variants "$IRSTD_GPU_BENCH_VARIANTS")
    PROBE_ARGS=(--model paper --max-steps 200)
    TRAIN_ARGS=(--model "${IRSTD_GPU_MODEL:-paper}")
    T_ENV=45 T_PYTEST=110 T_BENCH=130 T_PROBE=40 RESERVE=30
fi
COMPILE=()
[[ "${IRSTD_GPU_COMPILE:-0}" == 1 ]] && COMPILE=(--compile)
[[ -n "${IRSTD_GPU_GROUPS:-}" ]] && TRAIN_ARGS+=(--train-groups "$IRSTD_GPU_GROUPS")
[[ -n "${IRSTD_GPU_INIT:-}" ]] && TRAIN_ARGS+=(--init "$IRSTD_GPU_INIT")
[[ -n "${IRSTD_GPU_EVAL:-}" ]] && TRAIN_ARGS+=(--eval-group "$IRSTD_GPU_EVAL")
[[ -n "${IRSTD_GPU_EMA:-}" ]] && TRAIN_ARGS+=(--ema "$IRSTD_GPU_EMA")
EXTRA=()
if [[ -n "${IRSTD_GPU_TRAIN_ARGS:-}" ]]; then  # more training flags, split on spaces
    read -r -a EXTRA <<<"$IRSTD_GPU_TRAIN_ARGS"
    TRAIN_ARGS+=("${EXTRA[@]}")
fi
# the training's flags but the time (the step below adds --minutes): what the preflight reads
if [[ -n "${IRSTD_GPU_TRAIN_CONFIG:-}" ]]; then
    # irstd train's own recipe (teachers, mixture, implantation) on the device, its sources
    # read from the pack; the GPU trainer's knobs do not apply (the preflight refuses them)
    TRAINER=(-m irstd_ros.cli.main train) TRAINER_NAME=train
    TRAIN_CMD=(--config "$IRSTD_GPU_TRAIN_CONFIG" --device "$DEV" --out "$WORK/train" --no-resume "${EXTRA[@]}")
    # two data workers, as the device's eight are processes too (forked, their batches in /dev/shm)
    [[ "$DRY" == 1 ]] && TRAIN_CMD+=(--workers 2 --threads 1 --epochs 1 --max-steps 2)
    # irstd train checks its budget after each epoch, from after its data and teachers are
    # loaded, and saves nothing on SIGTERM: a larger margin than the GPU trainer's
    MARGIN=120
    SKIP="${SKIP}probe,"  # the probe measures the GPU trainer
else
    TRAINER=(-m irstd_ros.training.gpu) TRAINER_NAME=gpu MARGIN=45
    TRAIN_CMD=(--recipe "$RECIPE" --pack "$PACK" --device "$DEV" --out "$WORK/train" --no-resume
               "${COMPILE[@]}" "${TRAIN_ARGS[@]}")
fi

if [[ "$CHECK" == 1 ]]; then
    CARRY=("$PACK")
    [[ -n "${IRSTD_GPU_INIT:-}" ]] && CARRY+=("$IRSTD_GPU_INIT")
    [[ -d "$ROOT/.whl" ]] && CARRY+=("$ROOT/.whl")
    CARRY_ARGS=()
    for c in "${CARRY[@]}"; do CARRY_ARGS+=(--carry "$c"); done
    "$PYTHON" -m irstd_ros.tools.gpu_session preflight --tree "$ROOT" --trainer "$TRAINER_NAME" "${CARRY_ARGS[@]}" -- "${TRAIN_CMD[@]}" \
        || exit 2
    echo "gpu_session: check passed; carry: ${CARRY[*]#"$ROOT"/}"
    exit 0
fi

if [[ "$DRY" == 1 ]]; then
    step dry_data 60 "$PYTHON" -m irstd_ros.tools.gpu_session dry-data --root "$WORK/data"
    step pack 60 "$PYTHON" -m irstd_ros.cli.main pack --out "$PACK" --crop 32 \
        --nudt "$WORK/data/NUDT-SIRST" --sirst "$WORK/data/SIRST-v2"
    if [[ ! -f "$PACK" && "$SKIP" != *",train,"* ]]; then  # a failed step stops no other
        echo "== no pack was built (logs/pack.log): the probe and the training are skipped"
        SKIP="${SKIP}probe,train,"
        export IRSTD_GPU_SKIP="${SKIP#,}"  # what the preflight and the summary read
    fi
fi
# what would waste the call ends it now, not after the steps (none of them has run on the device);
# a preflight that itself breaks (not its exit 2) stops nothing: the steps say what is wrong
"$PYTHON" -m irstd_ros.tools.gpu_session preflight --trainer "$TRAINER_NAME" -- "${TRAIN_CMD[@]}" 2>"$LOGS/preflight.log"
rc=$?
if (( rc == 2 )); then
    cat "$LOGS/preflight.log" >&2
    echo "gpu_session: refused before any step (exit 2); here: bash scripts/gpu_session.sh --check" >&2
    exit 2
elif (( rc != 0 )); then
    tail -n 5 "$LOGS/preflight.log"
    echo "gpu_session: the preflight itself failed (rc=$rc, logs/preflight.log); going on"
fi

step env "$T_ENV" "$PYTHON" -m irstd_ros.tools.gpu_session env --out "$WORK/env.json"
timeout -k 5 20 nvidia-smi >"$LOGS/nvidia_smi.log" 2>&1 || true
# the shared memory the data workers hand batches through (irstd train fits its workers to it)
df -k /dev/shm >"$LOGS/shm.log" 2>&1 || true

step pytest_gpu "$T_PYTEST" "$PYTHON" -m pytest -m "gpu or tensorrt" -q -p no:cacheprovider -o addopts="-ra" \
    --continue-on-collection-errors "${PYTEST_PATHS[@]}"

step bench "$T_BENCH" "$PYTHON" -m irstd_ros.tools.gpu_bench "${BENCH_ARGS[@]}" --out "$OUT/bench.json"

if [[ ! -f "$PACK" ]]; then
    echo "== no pack at $PACK: training skipped (make it here with: irstd pack)" | tee "$LOGS/train.log"
    printf '%s\t125\t0\t0\n' probe train >>"$WORK/steps.tsv"
else
    step probe "$T_PROBE" "$PYTHON" -m irstd_ros.training.gpu --recipe paper --pack "$PACK" --device "$DEV" \
        --out "$WORK/probe" --eval-group none --no-resume "${PROBE_ARGS[@]}"
    # the training gets the time left, less the reserve for packing the results
    LIMIT=$(( $(left) - RESERVE ))
    if [[ "$DRY" == 1 ]]; then MINUTES=(); else
        MINUTES=(--minutes "$(awk -v s="$LIMIT" -v k="$MARGIN" 'BEGIN { m = (s - k) / 60; if (m < 0.5) m = 0.5; printf "%.2f", m }')")
    fi
    # on its time limit the training stops (SIGTERM) and writes its checkpoints, 10 s before the kill
    step train "$LIMIT" "$PYTHON" "${TRAINER[@]}" "${TRAIN_CMD[@]}" "${MINUTES[@]}"
fi

# results: the FP16 checkpoint (irstd train's: the FP32 one) in parts of <= 15 MiB, the logs,
# the summary (<= 8 files in all)
# (last.safetensors: a run the time limit killed before its final save; the raw weights)
"$PYTHON" -m irstd_ros.tools.gpu_session return-checkpoint --run "$WORK/train" --out "$OUT" >/dev/null
cp "$WORK/train/history.json" "$WORK/train/summary.json" "$LOGS/" 2>/dev/null
cp "$WORK/env.json" "$WORK/steps.tsv" "$LOGS/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
SUMMARY_ARGS=(--work "$WORK" --out "$OUT" --pack "$PACK" --tree "$ROOT")
[[ "$DRY" == 1 ]] && SUMMARY_ARGS+=(--dry-run)
"$PYTHON" -m irstd_ros.tools.gpu_session summarize "${SUMMARY_ARGS[@]}" >"$LOGS/summarize.log" 2>&1
rc=$?
# the log is in no file that comes back (logs.tar.gz is made before): show a failure here
[[ $rc != 0 ]] && tail -n 40 "$LOGS/summarize.log"
echo "== done in $(elapsed)s (budget ${BUDGET}s); summary rc=$rc; files in $OUT:"
ls -l "$OUT"
# the last lines of the reply: the step table and the headline numbers
"$PYTHON" - "$OUT/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["steps"]:
    print(f"{st['step']:<11} rc={st['rc']:<4} {st['seconds']:>4}s / {st['timeout_s']}s")
print("pytest -m \"gpu or tensorrt\":", s.get("pytest_gpu"))
t = s.get("train") or {}
ev = t.get("eval") or {}
print("train:", {k: t.get(k) for k in ("epochs_done", "img_per_s_median", "epoch_s_median", "stop")})
print("eval:", {k: ev.get(k) for k in ("iou", "niou", "f1", "pd", "fa", "images")})
p = s.get("probe_paper_recipe") or {}
print("paper recipe probe:", {k: p.get(k) for k in ("img_per_s_median", "epoch_s_median")})
for r in (s.get("bench") or {}).get("rows") or []:
    if r["variant"] in ("fp16", "fp16+graphs", "fp16+compile+graphs") and r["model"] == "paper":
        print(f"bench {r['variant']:<20} {r['model']:<8} {r['width']}x{r['height']}: p50 {r['p50_ms']:.3f} ms, {r['fps']:.0f} FPS")
EOF
exit 0
