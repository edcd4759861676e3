#!/usr/bin/env bash
# Creates .venv from requirements-test.txt (once) and installs the system packages
# the stages need (espeak-ng for the built-in corpus, ffmpeg for VoxCeleb2 m4a).
# Safe to run again: it does nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in espeak-ng ffmpeg; do
  command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install.sh: missing system packages: ${missing[*]}" >&2
    echo "  run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-test.txt -nt "$stamp" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-test.txt
  touch "$stamp"
fi
