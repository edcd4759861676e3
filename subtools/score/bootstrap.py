"""Bootstrap confidence intervals of EER and minDCF, and paired comparisons of systems.

**Resampling units.** A draw takes ``U`` units with replacement and keeps every trial of a drawn
unit as many times as the unit was drawn (a cluster bootstrap). By speaker (the default) the unit
of a trial is the speaker of its enroll key: ``utt2spk[key]`` when an utt2spk is given (every
enroll key must be in it), otherwise the part of the key before the first ``-`` (VoxCeleb
``id10270-5r0dWxy17C8-00001`` -> ``id10270``, built-in corpus ``mt0000-utt00003`` -> ``mt0000``;
a key without ``-``, such as a SITW model id, is its own unit). The trials of one speaker share
its voice and enrollment, so they are not independent draws; resampling whole speakers keeps that
correlation in the interval. By trial every trial is its own unit, which is right only when trials
are independent.

**Draws.** ``rng = numpy.random.default_rng(seed)``; draw ``b = 0, 1, ...`` is
``idx = rng.integers(0, U, size=U)`` and a trial's weight is the number of times its unit occurs
in ``idx``. The metrics of a draw are exactly those of :mod:`subtools.score.metrics` (Kaldi
compute-eer and compute_min_dcf.py) on the trial list in which every trial appears ``weight``
times, copies adjacent, in trial order. Systems scored on the same trials get the same draws,
so their differences are paired.

**Vectorised.** Each system's scores are sorted once. A block of draws is a weight matrix
``[B, M]``; its cumulative sums over the sorted targets and nontargets give every draw's miss and
false-alarm counts at every threshold. EER: Kaldi's walk stops at the first target position ``p``
where ``nontarget[N - 1 - floor(N p / T)] < target[p]``; that test is monotone in ``p``, so it is
found by a binary search per draw. minDCF: along the sorted scores the detection cost rises over a
run of targets and falls over a run of nontargets, so its minimum is at the end of a nontarget run
or at the last threshold; only those positions are evaluated.

**Intervals.** Percentile intervals (2.5 and 97.5 percentiles of the draws) for 95 %.
"""
import numpy as np

from subtools.score.metrics import compute_all

METRICS = ("eer", "mindcf_0.01", "mindcf_0.001")
P_TARGET = {"mindcf_0.01": 0.01, "mindcf_0.001": 0.001}
BLOCK_ELEMENTS = 1_000_000          # draws per block = this // trials (~30 MB of work arrays; cache-friendly)


def speaker_of(enroll_keys, utt2spk=None, source="trials"):
    """The speaker of each enroll key ``[M]`` (str): ``utt2spk[key]``, else the part before the first '-'."""
    if utt2spk is None:
        return [key.split("-", 1)[0] for key in enroll_keys]
    missing = [key for key in enroll_keys if key not in utt2spk]
    if missing:
        raise ValueError(f"{source}: {len(missing)} enroll keys are not in the utt2spk, first: {missing[0]}")
    return [utt2spk[key] for key in enroll_keys]


def resampling_units(enroll_keys, by="speaker", utt2spk=None, source="trials"):
    """``(units [M] int, U)``: the resampling unit of each trial (``by`` = speaker | trial) and their number."""
    if by == "trial":
        return np.arange(len(enroll_keys)), len(enroll_keys)
    if by != "speaker":
        raise ValueError(f"resampling unit must be 'speaker' or 'trial', not {by!r}")
    names, units = np.unique(speaker_of(enroll_keys, utt2spk, source), return_inverse=True)
    return units.reshape(-1), len(names)


def unit_counts(n_units, n_draws, seed, block):
    """Yield ``counts [b, U]`` (int64, b <= block): how often each unit is drawn, draw after draw."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_draws, block):
        yield np.stack([np.bincount(rng.integers(0, n_units, size=n_units), minlength=n_units)
                        for _ in range(min(block, n_draws - start))])


class _RowSearch:
    """``searchsorted(rows[b], q[b], side='right')`` for every row of a non-decreasing,
    non-negative int matrix ``rows [B, L]`` at once: the rows are shifted (in place) so that they
    form one sorted array."""

    def __init__(self, rows):
        B, L = rows.shape
        self.offsets = np.concatenate([[0], np.cumsum(rows[:, -1] + 1)[:-1]])
        rows += self.offsets[:, None]
        self.flat, self.starts = rows.reshape(-1), np.arange(B) * L

    def __call__(self, queries):
        return np.searchsorted(self.flat, queries + self.offsets, side="right") - self.starts


class SortedSystem:
    """One system's scores, sorted once, with what every draw needs.

    ``scores [M]`` float, ``labels [M]`` bool, ``units [M]`` int (resampling unit of each trial).
    """

    def __init__(self, scores, labels, units):
        order = np.argsort(scores, kind="stable")        # ties in trial order, as metrics.error_rates
        sorted_labels = labels[order]
        self.target_units = units[order][sorted_labels]
        self.nontarget_units = units[order][~sorted_labels]
        self.target_scores = scores[order][sorted_labels].astype(np.float32)      # compute-eer is float32
        self.nontarget_scores = scores[order][~sorted_labels].astype(np.float32)
        nontarget_pos = np.flatnonzero(~sorted_labels)
        next_is_target = np.append(sorted_labels[1:], True)[nontarget_pos]
        self.run_ends = np.flatnonzero(next_is_target)            # nontarget index ending a run
        self.targets_before = nontarget_pos[self.run_ends] - self.run_ends

    def draw_metrics(self, counts):
        """``{metric: [B]}`` of the draws whose unit counts are ``counts [B, U]`` (EER in %)."""
        cum_t = np.cumsum(counts[:, self.target_units], axis=1)
        cum_n = np.cumsum(counts[:, self.nontarget_units], axis=1)
        T, N = cum_t[:, -1].copy(), cum_n[:, -1].copy()
        if not (T > 0).all() or not (N > 0).all():
            raise ValueError("a bootstrap draw has no target or no nontarget trial: too few resampling "
                             "units hold them (resample by trial, or use more speakers)")
        out = {}
        k = self.targets_before
        fnr = np.where(k > 0, cum_t[:, np.maximum(k - 1, 0)], 0) / T[:, None]
        fpr = 1.0 - cum_n[:, self.run_ends] / N[:, None]
        for name, p in P_TARGET.items():
            c_det = np.minimum((fnr * p + fpr * (1.0 - p)).min(axis=1), p)   # p: last threshold
            out[name] = c_det / min(p, 1.0 - p)
        out["eer"] = 100.0 * (self._eer(_RowSearch(cum_t), _RowSearch(cum_n), T, N) / T)
        return out

    def _eer(self, target_rank, nontarget_rank, T, N):
        """Kaldi's stopping position ``p`` [B] in the weighted target list (binary search);
        ``*_rank(q)``: the sorted index holding weighted position ``q`` of each draw."""
        lo, hi = np.zeros_like(T), T - 1          # p = T - 1 is where the walk ends without stopping
        while (lo < hi).any():
            active = lo < hi
            mid = (lo + hi) // 2
            pos = np.maximum(N - 1 - (N * mid / T).astype(np.int64), 0)
            target = self.target_scores[target_rank(mid)]
            nontarget = self.nontarget_scores[nontarget_rank(pos)]
            stop = nontarget < target
            hi = np.where(active & stop, mid, hi)
            lo = np.where(active & ~stop, mid + 1, lo)
        return lo


def bootstrap_metrics(systems, labels, units, n_draws=1000, seed=0):
    """Metric draws of ``K`` systems scored on the same trials, all with the same draws.

    ``systems``: list of ``K`` score arrays ``[M]``; ``labels [M]`` bool; ``units [M]`` int from
    :func:`resampling_units`. Returns ``{metric: [K, n_draws]}`` (EER in %).
    """
    labels = np.asarray(labels, dtype=bool)
    units = np.asarray(units)
    _, units = np.unique(units, return_inverse=True)
    sorted_systems = []
    for scores in systems:
        compute_all(scores, labels)                    # validates: shapes, finite, both classes
        sorted_systems.append(SortedSystem(np.asarray(scores, dtype=np.float64), labels, units.reshape(-1)))
    block = max(1, BLOCK_ELEMENTS // labels.size)
    draws = {m: np.empty((len(systems), n_draws)) for m in METRICS}
    start = 0
    for counts in unit_counts(int(units.max()) + 1, n_draws, seed, block):
        for k, system in enumerate(sorted_systems):
            for m, values in system.draw_metrics(counts).items():
                draws[m][k, start:start + len(counts)] = values
        start += len(counts)
    return draws


def interval(draws, level=0.95):
    """Percentile interval ``(lo, hi)`` of ``draws [..., B]`` along the last axis."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(draws, [tail, 100.0 - tail], axis=-1)
    return lo, hi


def paired_difference(draws_a, draws_b, level=0.95):
    """``(lo, hi, p_better)`` of B - A from draws made with the same resampling: the percentile
    interval of the difference and the fraction of draws in which B is strictly lower (better)."""
    diff = np.asarray(draws_b) - np.asarray(draws_a)
    lo, hi = interval(diff, level)
    return lo, hi, float(np.mean(diff < 0))


def pool_seeds(draws, seed=0):
    """``[S, B] -> [B]``: for each bootstrap draw, the mean over S training seeds resampled with
    replacement (seed indices from ``default_rng(seed)``, the same for every call with that seed).
    The spread of the result holds both trial and training-seed variation. Two systems trained with
    the same S seeds (seed s: the same data order) pool with the same picks, so
    ``paired_difference(pool_seeds(a), pool_seeds(b))`` compares their seed means pair by pair."""
    draws = np.asarray(draws)
    S, B = draws.shape
    picks = np.random.default_rng(seed).integers(0, S, size=(B, S))
    return draws[picks, np.arange(B)[:, None]].mean(axis=1)


FORMATS = {"eer": ("EER", "%", 4), "mindcf_0.01": ("minDCF(0.01)", "", 4), "mindcf_0.001": ("minDCF(0.001)", "", 4)}


def format_interval(lo, hi, digits):
    """``[lo,hi]`` (no spaces, so a table row still splits on whitespace)."""
    return f"[{lo:.{digits}f},{hi:.{digits}f}]"


def system_draws(draws, k):
    """``{metric: [B]}`` of system ``k`` from the ``{metric: [K, B]}`` of :func:`bootstrap_metrics`."""
    return {m: values[k] for m, values in draws.items()}


def format_ci_line(draws):
    """``CI95: EER=[lo,hi]% minDCF(0.01)=[lo,hi] minDCF(0.001)=[lo,hi]`` of one system's ``{metric: [B]}``."""
    parts = []
    for m, (label, unit, digits) in FORMATS.items():
        lo, hi = interval(draws[m])
        parts.append(f"{label}={format_interval(lo, hi, digits)}{unit}")
    return "CI95: " + " ".join(parts)


def interval_cells(draws, digits=(3, 4, 4)):
    """``[lo,hi]`` strings of EER, minDCF(0.01), minDCF(0.001) from one system's ``{metric: [B]}``."""
    return [format_interval(*interval(draws[m]), d) for m, d in zip(METRICS, digits)]
