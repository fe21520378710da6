#!/usr/bin/env bash
# The GPU check: one prepared run for a lent GPU machine, about 5 minutes on one H200.
#   1. the tests whose code takes CUDA paths when a GPU is there (inference, Inferencer, predict,
#      trainer, export),
#   2. training steps of every model family with fp16 and bf16 autocast, and inference throughput
#      against transformers Segformer with the same weights (benchmarks/gpu_check.py),
#   3. DDP with NCCL, a short synthetic training run on every GPU (only with more than one GPU),
#   4. end-to-end `predict` throughput against the network's forward on the CamVid val frames,
#      fp32 and bf16 (benchmarks/predict_throughput.py --device cuda).
# Nothing is downloaded: torch, transformers, pytest and the rest must be installed already;
# segadapter itself runs from this checkout (PYTHONPATH). DATA is the CamVid root (val/ is enough):
# ../shared/data/camvid, else .gpu_data/camvid (a copy carried to a machine that has no ../shared);
# logs and JSON go to OUT.
#
#   DATA=../shared/data/camvid OUT=gpu_check_out bash benchmarks/gpu_check.sh
#   DEVICE=cpu bash benchmarks/gpu_check.sh     # a quick dry run of the plumbing, no GPU needed
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
DATA=${DATA:-../shared/data/camvid}
[ -d "$DATA/val" ] || [ ! -d .gpu_data/camvid/val ] || DATA=.gpu_data/camvid
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=()
[ "$DEVICE" = cuda ] || QUICK=(--quick)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
failed=()

part() {  # part NAME COMMAND...: run, keep the log, note a failure and go on
    local name=$1 start rc
    shift
    echo "=== $name: $*"
    start=$(date +%s)
    "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $(($(date +%s) - start)) s"
    [ "$rc" = 0 ] || failed+=("$name")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'gpus', torch.cuda.device_count(), 'transformers', transformers.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"
ngpu=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
[ "$ngpu" -ge 1 ] || [ "$DEVICE" != cuda ] || { echo "no CUDA device: this check is for a GPU machine"; exit 2; }

if [ "$DEVICE" = cuda ]; then
    part cuda-tests $PY -m pytest -q -p no:cacheprovider tests/test_eval_inference.py tests/test_inferencer.py \
        tests/test_predict_cli.py tests/test_engine_train.py tests/test_export.py
fi

part train-and-vs-hf $PY benchmarks/gpu_check.py --device "$DEVICE" "${QUICK[@]}" --json "$OUT/gpu_check.json"

if [ "$ngpu" -ge 2 ]; then
    part ddp-nccl $PY -m torch.distributed.run --standalone --nproc_per_node="$ngpu" -m segadapter train synthetic \
        --work-dir "$OUT/ddp_run" train.device=cuda train.amp=bf16 schedule.max_iters=40 train.eval_interval=40 \
        train.checkpoint_interval=40
else
    echo "=== ddp-nccl: one GPU, not checked (needs two or more)"
fi

if [ -d "$DATA/val" ]; then
    part predict-fp32 $PY benchmarks/predict_throughput.py --device "$DEVICE" "${QUICK[@]}" --data "$DATA" \
        --json "$OUT/predict_fp32.json"
    part predict-bf16 $PY benchmarks/predict_throughput.py --device "$DEVICE" "${QUICK[@]}" --data "$DATA" \
        --amp bf16 --json "$OUT/predict_bf16.json"
else
    echo "=== predict: no CamVid frames in $DATA/val; set DATA"
    failed+=(predict)
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "gpu check: all parts passed"
