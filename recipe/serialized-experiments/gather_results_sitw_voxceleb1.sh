#!/usr/bin/env bash
# Score SITW-dev/eval, VoxCeleb1-O/E/H (and every other test set listed in the experiment's
# config, e.g. the built-in corpus' mini-O/mini-H) and print one results table per back-end.
#
# Usage: gather_results_sitw_voxceleb1.sh EXP [--epochs "E1 E2"] [--backend plda|cosine|asnorm]
#                                             [--chain CHAIN] [--on-missing skip|stop]
#                                             [--ci 1000] [--ci-by speaker|trial]
#   EXP        experiment dir with config/config.yaml and far_epoch_<E>/<set>/xvector.scp
#              (<position>_epoch_<E> when the config sets extract.position)
#   --epochs   epochs to score (default: extract.epochs of the config)
#   --backend  plda (default; backend.chain), cosine (backend.cosine_chain) or asnorm
#   --ci       bootstrap draws of the tables' 95 % intervals; --ci-by: resampling unit
# Writes EXP/<backend>.results, EXP/det_<backend>_epoch<E>.png and the score files under
# EXP/far_epoch_<E>/scores/<backend>/. Test sets without embeddings are skipped with a message.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

exp=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --epochs|--backend|--chain|--on-missing|--ci|--ci-by)
      [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
      args+=("$1" "$2"); shift 2 ;;
    --*=*) args+=("$1"); shift ;;
    -*) echo "$0: unknown option $1" >&2; usage >&2; exit 1 ;;
    *) [ -z "$exp" ] || { echo "$0: only one EXP dir expected" >&2; exit 1; }
       exp="$1"; shift ;;
  esac
done
[ -n "$exp" ] || { usage >&2; exit 1; }
[ -f "$exp/config/config.yaml" ] || { echo "$0: $exp/config/config.yaml not found" >&2; exit 1; }

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$root/path.sh" ]; then
  . "$root/path.sh"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$root/subtools/score/gather_results.py" "$exp" ${args[@]+"${args[@]}"}
