#!/usr/bin/env bash
# Multi-GPU training with torchrun:
#   tools/dist_train.sh CONFIG NUM_GPUS [train.py options]
# NNODES, NODE_RANK, MASTER_ADDR and PORT may be set for several machines.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NUM_GPUS [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NUM_GPUS must be a whole number >= 1 (processes to start), got \"$GPUS\"" >&2
  exit 2
fi
shift 2
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
if ! [[ "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$PORT" -gt 65535 ]; then
  echo "error: PORT must be a port number 1-65535 (the rendezvous port of the processes), got \"$PORT\"" >&2
  exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
HERE=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$HERE/..:${PYTHONPATH:-}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$HERE/train.py" "$CONFIG" --launcher pytorch "$@"
