#!/usr/bin/env bash
# Seed study on the built-in corpus: the demo's three systems (serialized attention, statistics
# pooling, attentive statistics pooling) each trained with N seeds; a table of mean ± sd per system,
# back-end and test list, with 95 % intervals of the seed mean, and each system's EER compared with
# the statistics-pooling baseline, pooled over the seeds (recipe/mini/summarize_seeds.py).
#
#   bash recipe/mini/seeds.sh [--seeds 3] [--size small|full] [--nj 2]
#
# Seed s = 1024, 1025, ... (the demo itself trains with training.seed 888 and egs.seed 1024, so none of these
# runs is the demo's) sets
#   training.seed = s   model initialisation and the order of the training chunks;
#   egs.seed = s        which chunks are cut (those kept per speaker, egs.chunk_num; the validation ones),
#                       written to exp/mini_seeds/egs/seed<s> and shared by the three systems of seed s.
# egs.seed varies too because the chunks a run trains on are as much a chance outcome of the seed
# as its initialisation: holding them fixed would understate how much a rerun can change, and tie
# every system to one draw of training data. The three systems of one seed still share data order
# and chunks, so the comparison with the baseline is paired seed by seed.
# Runs recipe/mini/run.sh stages 0-1 (corpus, features; skipped when done) with --size, then trains
# each (system, seed) into exp/mini_seeds/<system>/seed<s> (launcher stages 0-4, restartable), scores
# it with PLDA and cosine, and writes the table to exp/mini_seeds/results.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

seeds=3 size=small nj=2
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --seeds) seeds=$2 ;;
    --size) size=$2 ;;
    --nj) nj=$2 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
  shift 2
done
[[ $seeds =~ ^[1-9][0-9]*$ ]] || { echo "$0: --seeds must be a positive integer" >&2; exit 1; }

bash recipe/mini/run.sh --stage 0 --endstage 1 --size "$size" --nj "$nj"
. ./path.sh

out=exp/mini_seeds
systems="mini-serialized:runSerialized-tdnn-xvector.py mini-xvector-stats:run-xvector.py mini-xvector-attentive:run-xvector.py"
system_dirs=()
for system in $systems; do
  config=conf/${system%%:*}.yaml script=${system##*:}
  name=$(python3 -c 'import os, sys; from subtools.pytorch.launcher.config import load_config; print(os.path.basename(load_config(sys.argv[1])["exp_dir"]))' "$config")
  for ((k = 0; k < seeds; k++)); do
    seed=$((1024 + k))
    exp=$out/$name/seed$seed
    echo "== $name, seed $seed -> $exp"
    python3 "recipe/serialized-experiments/$script" --config "$config" --stage 0 --endstage 4 \
      --set exp_dir="$exp" --set training.seed=$seed --set egs.seed=$seed --set egs.dir="$out/egs/seed$seed"
    for backend in plda cosine; do
      bash recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh "$exp" --backend $backend
    done
  done
  system_dirs+=("$out/$name")
done
python3 recipe/mini/summarize_seeds.py --out $out/results.txt --backends plda,cosine \
  --baseline mini_xvector_stats "${system_dirs[@]}"
