#!/usr/bin/env bash
# GPU smoke run of configs/saot/gta2cs.py at full Cityscapes resolution (2048x1024):
# SAOT pseudo-labels, stage 1 and stage 2 on generated scenes with a random ViT-L/14,
# reporting seconds per iteration of each stage and the peak GPU memory.
#
# On the device machine (CUDA and torch, no MMSeg), with .whl carried
# (bash tools/fetch_device_wheels.sh fills it here first):
#   OUT=/some/dir bash tools/device_smoke_full_resolution.sh [smoke_full_resolution.py options]
# Writes $OUT/machine.txt, $OUT/smoke.log and $OUT/smoke.json.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/smoke_full_resolution_out}
source tools/device_env.sh
install_carried_wheels || exit 1
describe_machine torch mmseg mmengine timm
start=$(date +%s)
set -o pipefail
timeout "${SMOKE_TIMEOUT:-420}" python3 tools/smoke_full_resolution.py \
    --out /tmp/smoke_full_resolution "$@" 2>&1 | tee "$OUT/smoke.log" | grep -v 'Iter(val)'
rc=$?
cp /tmp/smoke_full_resolution/smoke.json "$OUT/" 2>/dev/null
echo "smoke: rc=$rc in $(( $(date +%s) - start )) s"
exit $rc
