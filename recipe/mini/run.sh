#!/usr/bin/env bash
# The whole recipe on the built-in corpus (what `make demo` runs): serialized multi-layer multi-head
# attention x-vector against the statistics-pooling and attentive-pooling x-vector baselines.
#
#   bash recipe/mini/run.sh [--stage N] [--endstage M] [--size small|full] [--nj N]
#
# Stages (each restartable: finished work is skipped, partial work redone):
#   0  build the corpus: data/mini_corpus/ (audio, musan/, RIRS_NOISES/), data/mini_{train,test}
#   1  data preparation as for VoxCeleb (recipe/voxceleb/prepare.sh stages 0-3): MUSAN/RIR lists,
#      augmentation mini_train -> mini_train_aug, fbank + VAD for mini_train(_aug) and mini_test
#   2  serialized attention x-vector: launcher stages 0-4 (conf/mini-serialized.yaml)
#   3  x-vector, statistics pooling (conf/mini-xvector-stats.yaml)
#   4  x-vector, attentive statistics pooling (conf/mini-xvector-attentive.yaml)
#   5  back-end: PLDA and cosine tables for every system
#   6  the serialized system as a model package, calibrated on mini-dev (speakers of neither train nor
#      test): exp/mini_serialized/model/ (subtools/pytorch/pipeline/export_model.py), then a worked
#      `subtools/speaker.py verify` (one target and one nontarget trial of test speakers)
#   7  the summary table (EER, minDCF, parameters, training time, intervals, Cllr / actDCF before and
#      after the calibration of stage 6) in exp/mini_results.txt, one DET plot with the three systems
# Changing --size needs a fresh start: rm -rf data/mini_* data/musan_* data/rirs_* exp/mini_* exp/egs
# (stage 0 refuses a corpus directory built with another size).
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0 endstage=7 size=small nj=2
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --stage) stage=$2 ;;
    --endstage) endstage=$2 ;;
    --size) size=$2 ;;
    --nj) nj=$2 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
  shift 2
done

case $size in small|full) ;; *) echo "$0: --size must be small or full (tiny is for the tests)" >&2; exit 1 ;; esac
bash subtools/install.sh
. ./path.sh

corpus=data/mini_corpus
systems="mini-serialized:runSerialized-tdnn-xvector.py mini-xvector-stats:run-xvector.py mini-xvector-attentive:run-xvector.py"
run_stage() { [ "$stage" -le "$1" ] && [ "$endstage" -ge "$1" ]; }
start=$SECONDS

if run_stage 0; then
  echo "== stage 0: built-in corpus ($size)"
  python3 recipe/mini/make_corpus.py --config conf/mini_corpus.yaml --size "$size" --out "$corpus" --data data
fi

if run_stage 1; then
  echo "== stage 1: MUSAN/RIR lists, augmentation, features + VAD"
  bash recipe/voxceleb/prepare.sh --musan "$corpus/musan" --rirs "$corpus/RIRS_NOISES" --data data \
    --train-set mini_train --test-sets mini_test --nj "$nj"
fi

n=2
for system in $systems; do
  config=${system%%:*} script=${system##*:}
  if run_stage $n; then
    echo "== stage $n: $config (launcher stages 0-4)"
    python3 "recipe/serialized-experiments/$script" --config "conf/$config.yaml" --stage 0 --endstage 4
  fi
  n=$((n + 1))
done

config_value() {  # config_value CONFIG KEY.SUB: a value of a resolved experiment config
  python3 -c 'import sys; from subtools.pytorch.launcher.config import load_config
c = load_config(sys.argv[1])
for k in sys.argv[2].split("."): c = c[int(k)] if isinstance(c, list) else c[k]
print(c)' "$1" "$2"
}
exps=()
for system in $systems; do exps+=("$(config_value "conf/${system%%:*}.yaml" exp_dir)"); done
model=exp/mini_serialized/model

if run_stage 5; then
  echo "== stage 5: back-end"
  for exp in "${exps[@]}"; do
    for backend in plda cosine; do
      bash recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh "$exp" --backend $backend
    done
  done
fi

if run_stage 6; then
  echo "== stage 6: model package of the serialized system, calibrated on mini-dev"
  python3 subtools/pytorch/pipeline/export_model.py --exp-dir exp/mini_serialized \
    --epoch "$(config_value conf/mini-serialized.yaml extract.epochs.-1)" --out $model --backend plda \
    --calibration-trials data/mini_dev/trials/mini-dev --calibration-set data/mini_dev
  wav=$corpus/wav
  echo "worked example: enroll te0001-0001,te0001-0002; test te0001-0003 (same speaker), te0002-0001 (another)"
  for test in te0001/te0001-0003 te0002/te0002-0001; do
    python3 subtools/speaker.py verify --model $model \
      $wav/te0001/te0001-0001.wav,$wav/te0001/te0001-0002.wav $wav/$test.wav
  done
fi

if run_stage 7; then
  echo "== stage 7: results"
  python3 recipe/mini/summarize_results.py --out exp/mini_results.txt --det exp/mini_det.png \
    --backends plda,cosine --baseline mini_xvector_stats --calibration mini_serialized:plda=$model/calibration.json \
    "${exps[@]}"
fi
echo "recipe/mini/run.sh: stages $stage-$endstage done in $((SECONDS - start)) s"
