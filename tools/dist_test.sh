#!/usr/bin/env bash
# Multi-GPU evaluation: tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [options]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NUM_GPUS [tools/test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NUM_GPUS must be a whole number >= 1 (processes to start), got \"$GPUS\"" >&2
  exit 2
fi
shift 3
PYTHON=${PYTHON:-python}
PORT=${PORT:-29500}
if ! [[ "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$PORT" -gt 65535 ]; then
  echo "error: PORT must be a port number 1-65535 (the rendezvous port of the processes), got \"$PORT\"" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$HERE/..:${PYTHONPATH:-}" \
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$GPUS" \
    --master_port="$PORT" "$HERE/test.py" "$CONFIG" "$CHECKPOINT" \
    --launcher pytorch "$@"
