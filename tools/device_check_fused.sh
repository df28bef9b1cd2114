#!/usr/bin/env bash
# GPU check of the fused Sinkhorn iteration (mmseg_saot/ot/_fused_step.py), < 5 min.
#
# Run from anywhere on a machine with a CUDA GPU, torch and Triton but no mmseg:
#   OUT=/some/dir bash tools/device_check_fused.sh
# (a) the OT tests without the (CPU) Triton-interpreter ones, which include the
#     fused-vs-eager CUDA comparisons of tests/ot/test_fused_step.py;
# (b) the speed section at N = M = 4096 and 16384, d 1024: fused rows ('ours',
#     'ours-fp16', 'ours-bf16') next to 'ours-unfused', 'ours-fp16-unfused', the cuBLAS
#     and CUDA-graph rows and the memory floors, written to $OUT/ot_cuda_fused.md.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ot_device_check}
source tools/device_env.sh
if ls .whl/*.whl > /dev/null 2>&1; then  # POT and geomloss for the baseline rows
    install_carried_wheels
fi
describe_machine torch triton

start=$(date +%s)
timeout 160 python3 tools/run_ot_tests.py tests/ot -q -k "not interpreter" > "$OUT/tests.log" 2>&1
tests_rc=$?
tail -40 "$OUT/tests.log"
echo "tests: rc=$tests_rc in $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 120 python3 tools/benchmark_ot.py --device cuda --sizes 4096,16384 --dims 1024 \
    --sections speed --out "$OUT/ot_cuda_fused.md" > "$OUT/benchmark.log" 2>&1
bench_rc=$?
if [ -f "$OUT/ot_cuda_fused.md" ]; then cat "$OUT/ot_cuda_fused.md"; else tail -30 "$OUT/benchmark.log"; fi
echo "benchmark: rc=$bench_rc in $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
