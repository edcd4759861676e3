#!/usr/bin/env bash
# Ablation of the serialized attention on the built-in corpus (SPEC §6.1): number of layers L at
# H = 4 heads (L = 1, 2, 4) and number of heads H at L = 2 (H = 1, 4, 8), every other setting as
# conf/mini-serialized.yaml. Needs recipe/mini/run.sh stages 0-1 (data) done first; reuses their egs.
#
#   bash recipe/mini/ablation.sh [--grid "L:H L:H ..."]
#
# Each point trains into exp/mini_ablation/L<L>_H<H> (launcher stages 0-4, restartable), is scored
# with PLDA and cosine, and the table goes to exp/mini_ablation/results.txt, with 95 % bootstrap
# intervals and, when the grid holds it, each point's EER compared with L = 2, H = 4 (the point both
# sweeps share) on the same draws (recipe/mini/summarize_results.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

grid="1:4 2:4 4:4 2:1 2:8"
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --grid) grid=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done
. ./path.sh

exps=()
for point in $grid; do
  layers=${point%%:*} heads=${point##*:}
  exp=exp/mini_ablation/L${layers}_H${heads}
  echo "== L=$layers H=$heads -> $exp"
  python3 recipe/serialized-experiments/runSerialized-tdnn-xvector.py --config conf/mini-serialized.yaml \
    --stage 0 --endstage 4 --set exp_dir="$exp" \
    --set model.params.pooling_params.num_layers="$layers" \
    --set model.params.pooling_params.num_heads="$heads"
  for backend in plda cosine; do
    bash recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh "$exp" --backend $backend
  done
  exps+=("$exp")
done
baseline=()
[[ " $grid " == *" 2:4 "* ]] && baseline=(--baseline L2_H4)
python3 recipe/mini/summarize_results.py --out exp/mini_ablation/results.txt --det exp/mini_ablation/det.png \
  --backends plda,cosine ${baseline[@]+"${baseline[@]}"} "${exps[@]}"
