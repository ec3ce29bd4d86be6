#!/usr/bin/env bash
# GPU figures in one go, under 10 minutes on one NVIDIA H200 (issue 18, item 3).
#
# Prints, with the device and the date:
#   1. the train step of both flood packages on CUDA (samples/s, s/step, peak memory);
#   2. batch inference side by side at 8,192 and 20,000 px: geomlops' shard worker (S3
#      COG -> S3 tile COGs, + mask COG and polygons), TerraTorch tiled_inference, and the model's
#      forward passes alone on CUDA: Mpx/s, km²/s, tiles/s (512 px tiles), peak RSS and
#      GPU memory, and the ratios (model-alone tiles/s = the ceiling line);
#      (the peer needs ~34 GiB of host memory at 20,000 px);
#   3. GPU utilisation and memory over the whole run (nvidia-smi every second: mean and
#      max per section).
# Each section has its own time limit, so one slow section cannot eat the others.
# Needs the project's environment (.venv, `make install`) on the GPU machine; the local
# stack (SeaweedFS) is started by batch_vs_peers.py itself in a temporary home.
#
#   bash bench/gpu.sh 2>&1 | tee gpu-$(date +%F).log
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOG=$(mktemp -d)
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -l 1 >"$LOG/smi.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT

section() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local began=$(date +%s)
    echo "$name $began" >>"$LOG/marks"
    timeout -k 30 "$limit" "$@" || echo "!! $name stopped (exit $?)"
    echo "$name $(date +%s)" >>"$LOG/marks"
    echo "== $name took $(($(date +%s) - began)) s"
}

section train-step 90 $PY bench/train_step.py --steps 20 --batch-size 64
# 8,192 then 20,000 px; each size's table is printed as soon as it is done, so a 20,000 px
# run cut by the limit still leaves the 8,192 px figures.
section side-by-side 480 $PY bench/batch_vs_peers.py --sizes 8192,20000 --rounds 1 \
    --batch-size 64 --peer-limit-gb 100 --workdir "$LOG"

kill $SMI 2>/dev/null
echo "== GPU utilisation and memory per section (nvidia-smi, 1 s samples)"
$PY - "$LOG" <<'EOF'
import sys
from datetime import datetime
from pathlib import Path

log = Path(sys.argv[1])
samples = []
for line in (log / "smi.csv").read_text().splitlines():
    stamp, util, mem = (part.strip() for part in line.split(","))
    samples.append((datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp(), float(util), float(mem)))
marks = [line.split() for line in (log / "marks").read_text().splitlines()]
for (name, start), (_, end) in zip(marks[::2], marks[1::2]):
    inside = [(u, m) for t, u, m in samples if int(start) <= t <= int(end)]
    if inside:
        utils, mems = [u for u, _ in inside], [m for _, m in inside]
        print(f"{name:20} util mean {sum(utils) / len(utils):5.1f} % max {max(utils):5.1f} %, "
              f"memory max {max(mems):8.0f} MiB ({len(inside)} samples)")
EOF
