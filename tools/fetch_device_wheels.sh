#!/usr/bin/env bash
# Fill .whl/ with the wheels that the GPU machine's image lacks (it has torch, numpy,
# scipy, matplotlib, opencv-python-headless, timm, ...; not the MMSeg stack), for
# Python 3.12 on x86_64. Run here, in the repository root; .whl/ is git-ignored through
# .git/info/exclude. ~10 MB: well within a device call's 64 MiB carry.
#   bash tools/fetch_device_wheels.sh
# Then: the device call carries ".whl" and runs tools/device_smoke_full_resolution.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    mmsegmentation==1.2.2 mmengine==0.10.7 mmcv-lite==2.1.0 timm==1.0.31 \
    addict==2.4.0 yapf==0.43.0 platformdirs termcolor prettytable ftfy wcwidth \
    'setuptools<81' \
    POT==0.9.5 geomloss==0.3.1
# setuptools < 81: mmengine 0.10.7 resolves `mmseg::` config bases with pkg_resources
ls .whl
du -sh .whl
