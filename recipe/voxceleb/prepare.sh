#!/usr/bin/env bash
# Prepare VoxCeleb1/2, SITW, MUSAN and RIRS_NOISES for the serialized-attention x-vector recipes.
#
#   bash recipe/voxceleb/prepare.sh [--vox1 DIR] [--vox1-lists DIR] [--vox2 DIR] [--sitw DIR]
#        [--musan DIR] [--rirs DIR] --data OUT [--stage N] [--endstage M] [--nj N] [options]
#
# A corpus option left out skips its sets. Stages (each restartable; finished work is skipped):
#   0  data dirs + trials: OUT/voxceleb1{,_train,_test} (trials/{O,E,H}[-clean]), OUT/voxceleb2_dev,
#      OUT/sitw_{dev,eval}_{enroll,test} (trials/core-core.lst), OUT/musan_{music,noise,speech},
#      OUT/rirs_{smallroom,mediumroom}
#   1  augmentation of the train set T (default voxceleb2_dev): OUT/T_augcopies (reverb/noise/music/
#      babble copies, rendered on the fly) and OUT/T_aug = T + copies
#   2  features (--feat-type per --feat-conf) + VAD (--vad-conf), from one read of each utterance's audio,
#      for T, its copies (reusing T's VAD) and every test set; voxceleb1_{train,test} share voxceleb1's;
#      OUT/T_aug gets feats + vad
#   3  fix + validate every set: ready for the launcher's stage 0 (train_set: T_aug)
# Options:
#   --train-set NAME    data dir under OUT to augment (default voxceleb2_dev)
#   --test-sets "A B"   sets to make features for (default: the VoxCeleb1/SITW sets present)
#   --aug-factor F      F x N augmented copies (default 1, Kaldi/ASV-subtools)
#   --aug-subset balanced|kaldi   which copies: one per utterance, kinds alternating (default), or Kaldi's
#                       subset of the sorted copy ids, as the authors' data (some utterances get 2, some 0)
#   --vox2-pipes        VoxCeleb2 wav.scp as Kaldi's 'ffmpeg -i FILE ... |' pipes (default: the m4a paths,
#                       decoded in-process, utt2dur from their headers)
#   --vox2-convert wav|flac --vox2-audio-dir DIR   convert the m4a once to wav/flac files
#   --check-audio       decode every VoxCeleb2 m4a once in stage 0, leaving out unreadable ones
#   --feat-type fbank|mfcc|mfcc_pitch --feat-conf FILE --vad-conf FILE (defaults: fbank, conf/<type>.conf
#                       (mfcc_pitch: conf/mfcc23.conf), conf/vad.conf); every conf is checked before stage 0
#   --pitch-conf FILE --pitch-postprocess-conf FILE   mfcc_pitch: compute-/process-kaldi-pitch-feats options
#                       (defaults conf/pitch.conf and Kaldi's defaults: the authors' mfcc_23_pitch)
#   --compress          Kaldi-compress the feature arks (about 4x smaller; advised for VoxCeleb2)
#   --nj N              parallel jobs for audio headers, conversion, augmentation durations, features
#   --cmd CMD           runner of the stage-2 jobs (decoding, augmentation rendering, features + VAD): local,
#                       "slurm --partition cpu --mem 4G", run.pl, queue.pl ... (default: local processes)
set -euo pipefail

vox1= vox1_lists= vox2= sitw= musan= rirs= data=
stage=0 endstage=3 nj=4
train_set=voxceleb2_dev test_sets= aug_factor=1 aug_subset=balanced
vox2_convert= vox2_audio_dir= vox2_pipes= check_audio= compress=
feat_type=fbank feat_conf= vad_conf= pitch_conf= pitch_postprocess_conf= cmd=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-1}"; }
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    -h|--help) usage 0 ;;
    --check-audio) check_audio=--check-audio; shift; continue ;;
    --vox2-pipes) vox2_pipes=--pipes; shift; continue ;;
    --compress) compress=--compress; shift; continue ;;
  esac
  [ $# -ge 2 ] || { echo "$0: option $opt needs a value" >&2; exit 1; }
  case $opt in
    --vox1) vox1=$2 ;;           --vox1-lists) vox1_lists=$2 ;;
    --vox2) vox2=$2 ;;           --sitw) sitw=$2 ;;
    --musan) musan=$2 ;;         --rirs) rirs=$2 ;;
    --data) data=$2 ;;           --nj) nj=$2 ;;
    --stage) stage=$2 ;;         --endstage) endstage=$2 ;;
    --train-set) train_set=$2 ;; --test-sets) test_sets=$2 ;;
    --aug-factor) aug_factor=$2 ;; --aug-subset) aug_subset=$2 ;;
    --vox2-convert) vox2_convert=$2 ;; --vox2-audio-dir) vox2_audio_dir=$2 ;;
    --feat-type) feat_type=$2 ;; --feat-conf) feat_conf=$2 ;; --vad-conf) vad_conf=$2 ;;
    --pitch-conf) pitch_conf=$2 ;; --pitch-postprocess-conf) pitch_postprocess_conf=$2 ;;
    --cmd) cmd=$2 ;;
    *) echo "$0: unknown option $opt" >&2; usage ;;
  esac
  shift 2
done
[ -n "$data" ] || { echo "$0: --data OUT is required" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
case $feat_type in
  fbank|mfcc) feat_conf=${feat_conf:-$root/conf/$feat_type.conf} ;;
  mfcc_pitch) feat_conf=${feat_conf:-$root/conf/mfcc23.conf}; pitch_conf=${pitch_conf:-$root/conf/pitch.conf} ;;
  *) echo "$0: --feat-type must be fbank, mfcc or mfcc_pitch, not '$feat_type'" >&2; exit 1 ;;
esac
[ $feat_type = mfcc_pitch ] || [ -z "$pitch_conf$pitch_postprocess_conf" ] ||
  { echo "$0: --pitch-conf/--pitch-postprocess-conf need --feat-type mfcc_pitch" >&2; exit 1; }
vad_conf=${vad_conf:-$root/conf/vad.conf}
for dir in "$vox1" "$vox1_lists" "$vox2" "$sitw" "$musan" "$rirs"; do
  [ -z "$dir" ] || [ -d "$dir" ] || { echo "$0: corpus directory not found: $dir" >&2; exit 1; }
done
abs() { [ -z "$1" ] || realpath -m -- "$1"; }  # paths given relative to the caller's directory
vox1=$(abs "$vox1"); vox1_lists=$(abs "$vox1_lists"); vox2=$(abs "$vox2"); sitw=$(abs "$sitw")
musan=$(abs "$musan"); rirs=$(abs "$rirs"); vox2_audio_dir=$(abs "$vox2_audio_dir")
feat_conf=$(abs "$feat_conf"); vad_conf=$(abs "$vad_conf")
pitch_conf=$(abs "$pitch_conf"); pitch_postprocess_conf=$(abs "$pitch_postprocess_conf")
data_arg=$data; data=$(abs "$data")
cd "$(dirname "$0")/../.."  # the repo root: scripts run as python3 subtools/...
. ./path.sh
local=recipe/voxceleb/local
feat_opts=(--conf "$feat_conf" ${pitch_conf:+--pitch-conf "$pitch_conf"}
           ${pitch_postprocess_conf:+--pitch-postprocess-conf "$pitch_postprocess_conf"})
# every option file is checked now (file:line on a bad value), not hours later in stage 2
python3 subtools/make_features.py --check-confs "${feat_opts[@]}" $feat_type
python3 subtools/compute_vad.py --check-conf --conf "$vad_conf"
train=$data/$train_set

present() {  # the data dirs among "$@" that exist under $data
  local name
  for name in "$@"; do [ -f "$data/$name/utt2spk" ] && echo "$name"; done; true
}
summarize() { python3 $local/summarize.py "$@"; }

if [ -z "$test_sets" ]; then
  test_sets_default=1
fi
default_test_sets() {
  present voxceleb1 voxceleb1_train voxceleb1_test sitw_dev_enroll sitw_dev_test sitw_eval_enroll sitw_eval_test | xargs
}

if [ $stage -le 0 ] && [ $endstage -ge 0 ]; then
  echo "== stage 0: data dirs and trials in $data"
  made=()
  if [ -n "$vox1" ]; then
    python3 $local/make_voxceleb1.py --vox1 "$vox1" ${vox1_lists:+--lists "$vox1_lists"} --nj $nj "$data"
    made+=(voxceleb1 voxceleb1_train voxceleb1_test)
  fi
  if [ -n "$vox2" ]; then
    python3 $local/make_voxceleb2.py --vox2 "$vox2" --nj $nj $check_audio $vox2_pipes \
      ${vox2_convert:+--convert $vox2_convert --audio-dir "$vox2_audio_dir"} "$data"
    made+=(voxceleb2_dev)
  fi
  if [ -n "$sitw" ]; then
    python3 $local/make_sitw.py --sitw "$sitw" --nj $nj "$data"
    made+=(sitw_dev_enroll sitw_dev_test sitw_eval_enroll sitw_eval_test)
  fi
  if [ -n "$musan" ]; then
    python3 $local/make_musan.py --musan "$musan" --nj $nj "$data"
    made+=(musan_music musan_noise musan_speech)
  fi
  if [ -n "$rirs" ]; then
    python3 $local/make_rirs.py --rirs "$rirs" "$data"
    made+=(rirs_smallroom rirs_mediumroom)
  fi
  [ ${#made[@]} -gt 0 ] || echo "stage 0: no corpus option given: nothing to prepare"
  [ ${#made[@]} -eq 0 ] || summarize $(for n in "${made[@]}"; do echo "$data/$n"; done)
fi

if [ -n "${test_sets_default:-}" ]; then test_sets=$(default_test_sets); fi
test_sets=$(for n in $test_sets; do [ "$n" = "$train_set" ] || echo "$n"; done | xargs)  # train handled apart

if [ $stage -le 1 ] && [ $endstage -ge 1 ]; then
  echo "== stage 1: augmentation of $train"
  aug_opts=()
  if [ -n "$rirs" ]; then
    aug_opts+=(--rir-dirs "$data/rirs_smallroom,$data/rirs_mediumroom")
  fi
  if [ -n "$musan" ]; then
    aug_opts+=(--noise-dir "$data/musan_noise" --music-dir "$data/musan_music" --babble-dir "$data/musan_speech")
  fi
  if [ ! -f "$train/wav.scp" ]; then
    echo "stage 1: skipped: no train set $train (give --vox2, or --train-set NAME)"
  elif [ ${#aug_opts[@]} -eq 0 ]; then
    echo "stage 1: skipped: no --rirs or --musan given"
  else
    python3 subtools/kaldi/augment.py copies "${aug_opts[@]}" --factor $aug_factor --subset "$aug_subset" --nj $nj \
      "$train" "${train}_augcopies" --combined "${train}_aug"
    summarize "$train" "${train}_augcopies" "${train}_aug"
  fi
fi

features() {  # features + VAD for one data dir in one read of the audio, skipped when made with these options
  local dir=$1 vad=${2:-yes} vad_opts=()
  if [ "$vad" = yes ]; then vad_opts=(--vad-conf "$vad_conf"); fi
  python3 subtools/make_features.py --unless-made-with-these-options --nj $nj $compress ${cmd:+--cmd "$cmd"} \
    "${feat_opts[@]}" "${vad_opts[@]}" $feat_type "$dir"
}

if [ $stage -le 2 ] && [ $endstage -ge 2 ]; then
  echo "== stage 2: features ($feat_type, $feat_conf${pitch_conf:+ + $pitch_conf}) and VAD ($vad_conf)"
  shared=
  for set in $test_sets; do
    case $set in
      voxceleb1_train|voxceleb1_test) [ -d "$data/voxceleb1" ] && { shared="$shared $data/$set"; continue; } ;;
    esac
    features "$data/$set"
  done
  if [ -n "$shared" ]; then
    case " $test_sets " in *" voxceleb1 "*) ;; *) features "$data/voxceleb1" ;; esac
    python3 $local/tables.py share "$data/voxceleb1" $shared
  fi
  if [ -f "$train/wav.scp" ]; then
    features "$train"
    if [ -d "${train}_augcopies" ]; then
      features "${train}_augcopies" no
      python3 subtools/kaldi/augment.py reuse-vad "${train}_augcopies" "$train"
      python3 subtools/kaldi/augment.py combine "$train" "${train}_augcopies" "${train}_aug"
    fi
  fi
  summarize $(for n in $test_sets; do echo "$data/$n"; done) "$train" "${train}_aug"
fi

if [ $stage -le 3 ] && [ $endstage -ge 3 ]; then
  echo "== stage 3: fix and validate"
  for set in $test_sets $train_set ${train_set}_aug; do
    dir=$data/$set
    [ -d "$dir" ] || continue
    python3 subtools/data_dir.py fix "$dir"
    python3 subtools/data_dir.py validate "$dir"
  done
  summarize $(for n in $test_sets $train_set ${train_set}_aug; do echo "$data/$n"; done)
  echo "prepare.sh: done; data_root: $data_arg, train_set: $train_set$([ -d "${train}_aug" ] && echo _aug)"
fi
