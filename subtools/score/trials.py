"""Kaldi trials and score files, and the trial-key -> vector-row lookup shared by the scorers.

Trials: ``enroll test [target|nontarget]`` per line. Scores: ``enroll test score`` per line, in trial
order. Bad lines stop with ``file:line``.

Missing vectors policy (:func:`resolve_trials`): trials whose enroll or test key has no vector are
reported (count and first keys); ``on_missing="stop"`` raises, ``"skip"`` drops those trials and
prints the report.
"""
from dataclasses import dataclass

import numpy as np

from subtools.kaldi.fileio import atomic_write
from subtools.kaldi.trials import LABELS, parse_lines


class MissingVectorsError(ValueError):
    """Trials name keys that have no vector."""


@dataclass
class Trials:
    """Parallel lists ``enroll[k]``, ``test[k]``; ``labels [M]`` bool (True = target) or None."""

    enroll: list
    test: list
    labels: np.ndarray = None
    source: str = "<trials>"

    def __len__(self):
        return len(self.enroll)

    def subset(self, keep):
        """Trials where the bool mask ``keep [M]`` is True."""
        idx = np.flatnonzero(keep)
        return Trials([self.enroll[i] for i in idx], [self.test[i] for i in idx],
                      None if self.labels is None else self.labels[idx], self.source)


def _trial_fields(fields):
    if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in LABELS):
        raise ValueError("expected 'enroll test [target|nontarget]'")
    return fields[0], fields[1], fields[2] == LABELS[0] if len(fields) == 3 else None


def read_trials(path, need_labels=False):
    """Read a Kaldi trials file; labels are kept when every line has the third field."""
    rows = parse_lines(path, _trial_fields, pair=lambda row: row[:2])
    if not rows:
        raise ValueError(f"{path}: no trials")
    enroll, test, labels = (list(col) for col in zip(*rows))
    has = [x is not None for x in labels]
    if all(has):
        lab = np.array(labels, dtype=bool)
    elif need_labels:
        raise ValueError(f"{path}:{has.index(False) + 1}: trial without a target/nontarget label")
    else:
        lab = None
    return Trials(enroll, test, lab, str(path))


def write_scores(path, trials, scores):
    """Write ``enroll test score`` lines (trial order), atomically."""
    with atomic_write(path) as f:
        f.write("".join(f"{e} {t} {s:.6f}\n" for e, t, s in zip(trials.enroll, trials.test, scores)))


def _score_fields(fields):
    try:
        if len(fields) != 3:
            raise ValueError
        return (fields[0], fields[1]), float(fields[2])
    except ValueError:
        raise ValueError("expected 'enroll test score'") from None


def read_scores(path):
    """Score file -> dict ``(enroll, test) -> score``; a pair scored twice is an error naming the lines."""
    return dict(parse_lines(path, _score_fields, pair=lambda row: row[0]))


def report_missing(what, keys, total, source):
    """One-line report of trials whose keys are absent."""
    uniq = list(dict.fromkeys(keys))
    return (f"{len(keys)} of {total} trials name {what} keys absent from {source} "
            f"({len(uniq)} distinct), first: {', '.join(uniq[:5])}")


def resolve_trials(trials, enroll, test, on_missing="stop", enroll_src="enroll", test_src="test"):
    """Map trial keys to rows of the VectorSets ``enroll`` and ``test``.

    Returns ``(ie [M'], it [M'], keep [M] bool)``: row indices of the kept trials and the mask.
    """
    ie = np.array([enroll.index.get(k, -1) for k in trials.enroll], dtype=np.int64)
    it = np.array([test.index.get(k, -1) for k in trials.test], dtype=np.int64)
    keep = (ie >= 0) & (it >= 0)
    if not keep.all():
        msgs = []
        for what, idx, keys, src in (("enroll", ie, trials.enroll, enroll_src),
                                     ("test", it, trials.test, test_src)):
            bad = np.flatnonzero(idx < 0)
            if bad.size:
                msgs.append(report_missing(what, [keys[i] for i in bad], len(trials), src))
        msg = f"{trials.source}: " + "; ".join(msgs)
        if on_missing == "stop":
            raise MissingVectorsError(msg + " (use --on-missing skip to score the rest)")
        print(f"WARNING: {msg}; skipping {int((~keep).sum())} trials")
    return ie[keep], it[keep], keep
