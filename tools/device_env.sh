# Set-up shared by the tools/device_*.sh scripts; sourced from the repository root
# with OUT set. Puts /tmp/site (the carried wheels) and the repository on PYTHONPATH.
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"

install_carried_wheels() {  # the wheels that `bash tools/fetch_device_wheels.sh` put in .whl/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
}

describe_machine() {  # describe_machine MODULE...: the GPU and the modules' versions,
    # printed and written to $OUT/machine.txt
    local versions="import importlib, sys
print(' '.join(f'{m} {importlib.import_module(m).__version__}' for m in sys.argv[1:]))"
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      python3 -c "$versions" "$@"
    } 2>&1 | tee "$OUT/machine.txt"
}
