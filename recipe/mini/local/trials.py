"""Seeded verification trials for the built-in corpus.

``mini-O``: target pairs (two different utterances of one speaker) and nontarget pairs of
utterances of two different speakers drawn at random. ``mini-H`` (hard): the same target pairs,
nontargets drawn only from speaker pairs of the same accent and gender. No utterance is paired
with itself and no unordered pair appears twice; enroll < test in C order; lines sorted. A list
size of ``all`` keeps every such pair (the demo's lists: 2,880 targets and 70,656 / 9,216 nontargets
at --size small), so that bootstrap intervals are narrow enough to separate systems.
"""
import numpy as np

from subtools.kaldi.trials import LABELS


def _pairs(utts, keep):
    """All unordered utterance index pairs (i < j) with ``keep(i, j)`` true: ``[P, 2]``."""
    i, j = np.triu_indices(len(utts), k=1)
    mask = keep(i, j)
    return np.stack([i[mask], j[mask]], axis=1)


def make_trials(utt2spk, spk2group, num_trials, rng, hard=False):
    """Return ``[(enroll, test, label)]`` sorted, with about ``num_trials`` trials: half targets
    (all of them if fewer exist), the rest nontargets (all if fewer exist); ``num_trials="all"``:
    every target and nontarget pair.

    ``spk2group`` maps speaker -> group key (accent+gender); with ``hard`` nontargets only pair
    speakers of one group. ``rng`` is a numpy Generator; the target choice uses a child stream
    that does not depend on ``hard``, so mini-O and mini-H share their target trials.
    """
    target_rng, nontarget_rng = rng.spawn(2)
    utts = sorted(utt2spk)
    spk = np.array([utt2spk[u] for u in utts])
    group = np.array([spk2group[s] for s in spk])
    targets = _pairs(utts, lambda i, j: spk[i] == spk[j])
    if hard:
        nontargets = _pairs(utts, lambda i, j: (spk[i] != spk[j]) & (group[i] == group[j]))
    else:
        nontargets = _pairs(utts, lambda i, j: spk[i] != spk[j])
    if num_trials == "all":
        num_trials = len(targets) + len(nontargets)
    elif not isinstance(num_trials, int) or num_trials < 2:
        raise ValueError(f"trials: a list size is 'all' or an integer >= 2, not {num_trials!r}")
    n_target = min(num_trials // 2, len(targets))
    n_nontarget = min(num_trials - n_target, len(nontargets))
    chosen = [(targets[target_rng.choice(len(targets), n_target, replace=False)], LABELS[0]),
              (nontargets[nontarget_rng.choice(len(nontargets), n_nontarget, replace=False)], LABELS[1])]
    return sorted((utts[i], utts[j], label) for pairs, label in chosen for i, j in pairs)
