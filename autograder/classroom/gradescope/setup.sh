#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (its Ubuntu base image),
# from the folder the zip was unpacked into (/autograder/source). Built by `python -m autograder gradescope`.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
apt-get update
# bubblewrap: the sandbox (where the container allows user namespaces; otherwise the autograder falls
# back to in-process isolation and says so in the results' extra_data)
apt-get install -y --no-install-recommends python3 python3-pip python3-venv bubblewrap
# torch's CPU build (the default index would fetch the CUDA build, gigabytes), pinned as in the course
python3 -m pip install --index-url https://download.pytorch.org/whl/cpu "$(grep -E '^torch==' requirements.txt)"
python3 -m pip install -r requirements.txt
python3 -c "import torch, numpy, pytest, tqdm; import autograder, reference" || { echo "setup.sh: the install failed"; exit 1; }
