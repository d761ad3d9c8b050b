#!/usr/bin/env bash
# One-time set-up on a fresh machine: the off-screen GL library for videos, a CPU build of
# PyTorch (unless torch is already installed), then hacray itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")"

if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libosmesa6 >/dev/null
fi

if ! python3 -c "import torch" 2>/dev/null; then
    # pinned first: on our machines 2.13.0 is a local CPU wheel, while a bare 'torch'
    # requirement would pull several GB of CUDA packages
    python3 -m pip install -q "torch==2.13.0"
fi
python3 -m pip install -q -e ".[test]"
