#!/usr/bin/env bash
# Every GPU check that issues 3-5 ask for, in one device call (~9 min at most):
#   1. the full-resolution smoke run of configs/saot/gta2cs.py (#5),
#   2. pseudo-labelling throughput, ViT-L/14 at 518x1036, K = 8, with the operator calls
#      (kernel launches) of one labeller call per part (#4),
#   3. the OT speed section at N = M = 4096 and 16384, d 1024, with memory floors (#3).
# On the device machine, with .whl carried (bash tools/fetch_device_wheels.sh here first):
#   OUT=/some/dir bash tools/device_check_all.sh
# Each step has its own time limit, so one that overruns still leaves the others theirs.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check_all}
source tools/device_env.sh
install_carried_wheels || exit 1
describe_machine torch triton mmseg mmengine timm
: > "$OUT/steps.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    grep -v 'Iter(val)' "$OUT/$name.log" | tail -25
    echo "== $name: rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/steps.txt"
}

step smoke "${SMOKE_TIMEOUT:-270}" python3 tools/smoke_full_resolution.py --out /tmp/smoke_full_resolution
cp /tmp/smoke_full_resolution/smoke.json "$OUT/" 2>/dev/null
step pseudo_labels "${PL_TIMEOUT:-130}" python3 tools/benchmark_pseudo_labels.py --preset paper \
    --device cuda --solver auto --count-ops --out "$OUT/pseudo_labels_cuda.md"
step ot "${OT_TIMEOUT:-110}" python3 tools/benchmark_ot.py --device cuda --sizes 4096,16384 \
    --dims 1024 --sections speed --out "$OUT/ot_cuda.md"
cat "$OUT/steps.txt"
! grep -qv 'rc=0 ' "$OUT/steps.txt"
