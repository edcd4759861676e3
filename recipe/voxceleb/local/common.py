"""Shared pieces of the corpus preparation scripts in recipe/voxceleb/local/.

Policies: a missing corpus directory or required list file stops the script with a message naming
it; audio named by a list file but absent stops the script (SITW) or is reported (optional VoxCeleb1
metadata); trials naming utterances that are not in the data are skipped whole with a message
(see make_voxceleb1.py). Everything is written atomically through DataDir.save / write_lines.
"""
import os
import sys

from subtools.kaldi import audio
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import write_lines


class PrepError(ValueError):
    """Bad or missing corpus input; the message names the file or directory."""


def require_dir(path, what):
    if not os.path.isdir(path):
        raise PrepError(f"{what}: directory not found: {path}")
    return path


def require_file(path, what):
    if not os.path.isfile(path):
        raise PrepError(f"{what}: file not found: {path}")
    return path


def find_audio(root, ext):
    """Sorted paths (relative to ``root``) of the files ending in ``ext`` under ``root``."""
    found = []
    for directory, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, f), root) for f in files if f.endswith(ext)]
    return sorted(found)


def write_dir(path, wav_scp, utt2spk, nj=1, tables=None, durations=True):
    """Write a data dir from {utt: entry} and {utt: spk} (plus extra tables by file name), with
    utt2dur from the audio headers (``nj`` threads) unless ``durations`` is False. Returns the
    DataDir (spk2utt filled in by the save)."""
    data = DataDir(wav_scp=dict(wav_scp), utt2spk=dict(utt2spk), tables=dict(tables or {}))
    if durations:
        data.utt2dur = audio.durations(data.wav_scp, nj)
    data.save(path)
    return data


def write_trials(data_path, name, lines):
    write_lines(os.path.join(data_path, "trials", name), lines)


def remove_trials(data_path, name):
    """Remove a trials file left by an earlier run (its list is gone or no longer fits the data)."""
    path = os.path.join(data_path, "trials", name)
    if os.path.isfile(path):
        os.remove(path)


def warn(message):
    print(f"WARNING: {message}", file=sys.stderr)
