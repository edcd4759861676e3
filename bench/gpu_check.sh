#!/usr/bin/env bash
# GPU check (issue 14, item 4): training throughput (paper model and statistics baseline, batch 512, fp32 /
# bf16 / fp16 AMP), a 1-process NCCL DDP run under torchrun, extraction on cuda vs the CPU, the egs loader
# with 8 and 16 workers beside the GPU step rate; each part time-boxed, a summary at the end; about 5
# minutes at most on one GPU; without CUDA it says so and exits 0. See bench/gpu_check.py.
#
#   bash bench/gpu_check.sh [--work DIR] [--dry-run]
cd "$(dirname "$0")/.." || exit 1
. ./path.sh
exec python3 bench/gpu_check.py "$@"
