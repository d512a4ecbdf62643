#!/usr/bin/env bash
# Train podsep's separator further on a lent GPU machine, inside one device call.
#
# That machine has no ../shared, no soundfile and takes 64 MiB of files, so prepare here first:
#   python scripts/train_separator.py --pack runs/packed          # corpora at 8 kHz, about 46 MB
#   mkdir -p runs/separator-gpu && cp runs/separator/checkpoint.pt runs/separator-gpu/
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       soundfile==0.13.1 cffi==2.0.0 pycparser==2.23
# then call the device tool with
#   command: bash scripts/device_train_separator.sh 8
#   carry:   ["runs/packed", "runs/separator-gpu", ".whl"]
# and copy what comes back (checkpoint.pt, log.json, the last snapshots) into runs/separator-gpu/.
#
# The run warm-restarts the schedule at the checkpoint's step with a larger batch, sizes
# the schedule to MINUTES from the speed of its first steps (the resolved step count is
# recorded in the checkpoint), mixes batches in 14 worker processes, and keeps every
# checkpoint (one a minute) so that the last ones can be averaged here with
#   python scripts/train_separator.py --run-dir runs/separator-gpu --export ... --average-from N
set -euo pipefail
MINUTES=${1:-8}
BATCH=${BATCH:-16}
LR=${LR:-3e-4}
RUN_DIR=${RUN_DIR:-runs/separator-gpu}
DATA=${DATA:-runs/packed}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}
WHEELS=${WHEELS:-.whl}
[ -d "$WHEELS" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
START=$(python3 -c "import torch; print(torch.load('$RUN_DIR/checkpoint.pt', weights_only=True)['step'])")
python3 scripts/train_separator.py --run-dir "$RUN_DIR" --data "$DATA" --device "$DEVICE" \
    --workers "$WORKERS" --threads 1 --batch "$BATCH" --lr "$LR" --schedule-start "$START" --warmup 200 \
    --steps-for-minutes "$MINUTES" --max-minutes $((MINUTES + 1)) \
    --speed-perturbation 0.5 --snapshot-from "$START" --checkpoint-every 60 2>&1 | tee "$OUT/train.log"
cp "$RUN_DIR/checkpoint.pt" "$RUN_DIR/log.json" "$OUT/"
ls "$RUN_DIR"/snapshots/step-*.pt | tail -n 5 | xargs -I{} cp {} "$OUT/"
