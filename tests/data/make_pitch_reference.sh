#!/usr/bin/env bash
# Regenerate tests/data/pitch/: the test audio (project venv: espeak-ng, scipy) and the Kaldi pitch
# reference arrays from torchaudio 2.0.2's build of Kaldi's pitch code, installed in a throw-away venv
# outside the repo (about 3 GB; torchaudio 2.1 removed compute_kaldi_pitch).
#
#   bash tests/data/make_pitch_reference.sh [--keep-audio] [VENV]   (default VENV /tmp/pitchref-venv)
set -euo pipefail
keep_audio=
[ "${1:-}" = --keep-audio ] && { keep_audio=1; shift; }
venv=${1:-/tmp/pitchref-venv}
cd "$(dirname "$0")/../.."
out=tests/data/pitch
if [ -z "$keep_audio" ]; then
  . ./path.sh
  python3 tests/data/make_pitch_reference.py audio $out
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.0.1 torchaudio==2.0.2 "numpy<2" soundfile
fi
"$venv/bin/python" tests/data/make_pitch_reference.py reference $out
ls -l $out
