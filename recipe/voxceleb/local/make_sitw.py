"""Speakers in the Wild (SITW) core-core data dirs and trials, following Kaldi's egs/sitw make_sitw.sh.

Input ``--sitw DIR`` with ``{dev,eval}/{audio,keys,lists}``:
- ``lists/enroll-core.lst``: ``model-id audio/<file>.flac ...`` -> enroll dir, utterance
  ``<model-id>_<file>``, speaker = model id (enrollment vectors are averaged per model at scoring);
- ``lists/test-core.lst``: ``audio/<file>.flac ...`` -> test dir, utterance = speaker = ``<file>``;
- ``keys/core-core.lst``: ``model-id audio/<file>.flac tgt|imp`` -> ``trials/core-core.lst`` of the
  test dir, ``model-id <file> target|nontarget``.
Audio is flac, 16 kHz, read directly (no sox pipe). Output: ``OUT/sitw_{dev,eval}_{enroll,test}/``.

Policy: a missing directory or list file, a list line naming absent audio, or a trial naming a model
or file outside the enroll/test lists stops the script, naming the file (and line).
"""
import argparse
import os

from recipe.voxceleb.local.common import PrepError, require_dir, require_file, write_dir, write_trials
from subtools.cli import run_cli
from subtools.kaldi import trials as trials_lib

SUBSETS = ("dev", "eval")


def read_list(path, root, with_model):
    """[(model or None, file id, absolute audio path)] of an enroll/test list; checks the audio exists."""
    entries, absent = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if with_model and len(fields) < 2:
                raise PrepError(f"{path}:{lineno}: expected 'model-id audio/file.flac'")
            rel = fields[1] if with_model else fields[0]
            audio = os.path.join(root, rel)
            if not os.path.isfile(audio):
                absent.append(f"{path}:{lineno}: {audio}")
            entries.append((fields[0] if with_model else None, os.path.splitext(os.path.basename(rel))[0],
                            os.path.abspath(audio)))
    if absent:
        raise PrepError(f"{len(absent)} audio files listed but absent, first: " + "; ".join(absent[:3]))
    return entries


def prepare(sitw, subset, out, nj):
    root = require_dir(os.path.join(sitw, subset), f"SITW {subset}")
    lists = os.path.join(root, "lists")
    enroll = read_list(require_file(os.path.join(lists, "enroll-core.lst"), "SITW enroll list"), root, True)
    test = read_list(require_file(os.path.join(lists, "test-core.lst"), "SITW test list"), root, False)
    key = require_file(os.path.join(root, "keys", "core-core.lst"), "SITW core-core key")

    enroll_scp = {f"{model}_{file_id}": audio for model, file_id, audio in enroll}
    enroll_dir = write_dir(os.path.join(out, f"sitw_{subset}_enroll"), enroll_scp,
                           {f"{model}_{file_id}": model for model, file_id, _ in enroll}, nj)
    test_scp = {file_id: audio for _, file_id, audio in test}
    test_path = os.path.join(out, f"sitw_{subset}_test")
    write_dir(test_path, test_scp, {u: u for u in test_scp}, nj)

    trials = trials_lib.drop_repeats(trials_lib.read_sitw_key(key), key)
    trials_lib.check_trials(trials, enroll_dir.spk2utt, test_scp, key)
    write_trials(test_path, "core-core.lst", trials_lib.format_trials(trials))
    targets, nontargets = trials_lib.count_trials(trials)
    print(f"make_sitw: {subset}: enroll {len(enroll_dir.spk2utt)} models / {len(enroll_scp)} utterances, "
          f"test {len(test_scp)} utterances, core-core {targets} target + {nontargets} nontarget trials")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sitw", required=True, help="SITW root holding dev/ and eval/")
    parser.add_argument("--subsets", default="dev,eval", help="comma-separated subsets to prepare")
    parser.add_argument("--nj", type=int, default=1, help="processes for reading audio headers")
    parser.add_argument("out", help="output data root")
    args = parser.parse_args()
    require_dir(args.sitw, "--sitw")
    for subset in args.subsets.split(","):
        if subset not in SUBSETS:
            raise PrepError(f"--subsets: unknown subset '{subset}' (dev, eval)")
        prepare(args.sitw, subset, args.out, args.nj)


if __name__ == "__main__":
    run_cli(main)
