# Source me: `. path.sh`. Activates the project venv, puts the repo on PYTHONPATH
# and sets the C locale so that sorted keys follow Kaldi's order.
_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ -f "$_root/.venv/bin/activate" ]; then
  . "$_root/.venv/bin/activate"
fi
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
unset _root
