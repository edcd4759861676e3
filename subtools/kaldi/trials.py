"""Trials lists: conversion of the official VoxCeleb1 / SITW key files to Kaldi trials, and checking.

A Kaldi trials file has one ``enroll test target|nontarget`` line per trial. The corpus formats are:

- VoxCeleb1 (``veri_test.txt``, ``list_test_all.txt``, ``list_test_hard.txt`` and the cleaned ``*2.txt``):
  ``1|0 idXXXXX/<ytid>/NNNNN.wav idYYYYY/<ytid>/NNNNN.wav`` (1 = same speaker); a path maps to the
  utterance id ``idXXXXX-<ytid>-NNNNN`` (:func:`vox1_utt_id`).
- SITW keys (``keys/core-core.lst``): ``model-id audio/<file>.flac tgt|imp``; as in Kaldi's
  ``make_sitw.sh`` the test side becomes the file basename and the enroll side stays the model id.
"""
import os
import sys

from subtools.kaldi.fileio import text_lines

LABELS = ("target", "nontarget")


def vox1_utt_id(path):
    """``id10270/5r0dWxy17C8/00001.wav`` -> ``id10270-5r0dWxy17C8-00001`` (also for .m4a paths)."""
    parts = os.path.splitext(path)[0].split("/")
    if len(parts) < 3:
        raise ValueError(f"'{path}' is not of the form idXXXXX/<youtube-id>/NNNNN.wav")
    return "-".join(parts[-3:])


def parse_lines(path, convert, pair=None):
    """Apply ``convert(fields)`` to the whitespace-split fields of each non-empty line of ``path`` and
    return the list of results; a ValueError from ``convert`` is re-raised naming the file and line.
    ``pair(result)``, when given, is the ``(enroll, test)`` pair of a result: a pair listed twice is a
    ValueError naming both lines (a repeated trial would count twice in every metric)."""
    trials, seen = [], {}
    for lineno, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        try:
            trials.append(convert(fields))
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}: '{line.strip()}'") from None
        if pair is not None:
            key = pair(trials[-1])
            if key in seen:
                raise ValueError(f"{path}:{lineno}: the pair '{key[0]} {key[1]}' is listed again (first at line "
                                 f"{seen[key]})")
            seen[key] = lineno
    return trials


def _vox1_fields(fields):
    if len(fields) != 3 or fields[0] not in ("0", "1"):
        raise ValueError("expected '1|0 path1 path2'")
    return vox1_utt_id(fields[1]), vox1_utt_id(fields[2]), LABELS[0] if fields[0] == "1" else LABELS[1]


def _sitw_fields(fields):
    if len(fields) < 3 or fields[2] not in ("tgt", "imp"):
        raise ValueError("expected 'model-id audio/file.flac tgt|imp'")
    test = os.path.splitext(os.path.basename(fields[1]))[0]
    return fields[0], test, LABELS[0] if fields[2] == "tgt" else LABELS[1]


def read_vox1_list(path):
    """Read a VoxCeleb1 verification list into ``[(enroll_utt, test_utt, label)]``."""
    return parse_lines(path, _vox1_fields)


def read_sitw_key(path):
    """Read a SITW key file (e.g. ``keys/core-core.lst``) into ``[(model, test_utt, label)]``."""
    return parse_lines(path, _sitw_fields)


def read_trials(path):
    """Read a Kaldi trials file into ``[(enroll, test, label)]``."""
    def kaldi_fields(fields):
        if len(fields) != 3 or fields[2] not in LABELS:
            raise ValueError("expected 'enroll test target|nontarget'")
        return tuple(fields)
    return parse_lines(path, kaldi_fields, pair=lambda trial: trial[:2])


def missing_keys(trials, enroll_keys, test_keys):
    """Keys named by ``trials`` that are absent from ``enroll_keys`` / ``test_keys`` (sorted lists)."""
    enroll_keys, test_keys = set(enroll_keys), set(test_keys)
    missing = {e for e, _, _ in trials if e not in enroll_keys} | {t for _, t, _ in trials if t not in test_keys}
    return sorted(missing)


def check_trials(trials, enroll_keys, test_keys, name):
    """Raise ValueError naming ``name``, the count and the first missing keys if ``trials`` refers to
    an enroll or test key that is not in the data (a partial corpus download, a wrong list file)."""
    missing = missing_keys(trials, enroll_keys, test_keys)
    if missing:
        shown = " ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{name}: {len(missing)} key(s) named by the trials are not in the data: {shown}")


def drop_repeats(trials, source):
    """``trials`` without a pair listed again (first kept); a warning names ``source``, the count and the
    first repeat. Used when converting corpus lists, so that scoring (which refuses repeats) can run."""
    seen, kept, repeats = set(), [], []
    for trial in trials:
        (repeats if trial[:2] in seen else kept).append(trial)
        seen.add(trial[:2])
    if repeats:
        print(f"WARNING: {source}: {len(repeats)} repeated trial(s) dropped (first kept), e.g. "
              f"'{repeats[0][0]} {repeats[0][1]}'", file=sys.stderr)
    return kept


def format_trials(trials):
    """Kaldi trials lines (without newlines), in the list file's order."""
    return [f"{enroll} {test} {label}" for enroll, test, label in trials]


def count_trials(trials):
    """``(num_target, num_nontarget)``."""
    targets = sum(label == LABELS[0] for _, _, label in trials)
    return targets, len(trials) - targets
