"""Score trials with a back-end chain, as ASV-subtools scoreSets (Kaldi sid/voxceleb v2 back-end).

A chain is a dash-separated list: pre-processing steps, one scorer, optionally ``asnorm``::

    submean-lda-norm-plda     submean-norm-cosine     submean-lda-norm-plda-asnorm

* ``submean`` -- subtract the training set's global mean (Kaldi ivector-subtract-global-mean)
* ``lda``     -- Kaldi ivector-compute-lda affine transform to ``lda_dim`` (``--total-covariance-factor``
  = ``lda_total_covariance_factor``, default 0.0 as Kaldi)
* ``norm``    -- length normalisation to sqrt(dim) (Kaldi ivector-normalize-length)
* ``plda``    -- Kaldi PLDA (EM, ``plda_iters``), smoothed by ``plda_smoothing`` (ivector-copy-plda
  --smoothing, default 0.0 as Kaldi), LLR with length normalisation inside
* ``cosine``  -- cosine similarity
* ``asnorm``  -- adaptive symmetric normalisation against the speaker means of a cohort set (top N)

Every step is estimated on the (already processed) vectors of the training set, then applied to
the enroll, test and cohort vectors. Inputs are embedding set dirs ``DIR/xvector.scp`` (+
``utt2spk``, ``spk2utt``). Trial enroll keys are either utterance ids of the enroll set (n = 1) or
speaker ids of its spk2utt: those speakers' raw vectors are averaged first, as Kaldi
``ivector-mean``, and PLDA uses n = number of utterances averaged (SITW).

With the authors' settings (``gather_results_sitw_voxceleb1.sh`` of the paper's code, i.e. Kaldi
sitw/v2): chain ``submean-lda-norm-plda``, ``lda_dim`` 128, factor 0.0, smoothing 0.0, trained on the
augmented training set.

Trained steps are saved in ``--model-dir`` (``step<i>_submean.vec``, ``step<i>_lda.mat`` as Kaldi
binary objects, ``plda.txt`` in Kaldi text format as trained, ``params.json`` written last) and reused
when ``params.json`` matches: it holds the training set (path, and the fingerprint of its embeddings:
xvector.scp's content and its arks' identities, :func:`~subtools.kaldi.fingerprint.scp_fingerprint`), the chain and
every training option (``lda_dim``, ``lda_total_covariance_factor``, ``plda_iters``), so changing one
refits. The scoring options (``plda_smoothing``, ``plda_simple_length_norm``) are applied to the
loaded model, as ``ivector-copy-plda`` in Kaldi's scoring pipe, and need no refit.

Config: the ``backend:`` section of an experiment config names the Backend arguments
(:data:`BACKEND_ARGS`) and the sets and chains gather_results reads (:data:`BACKEND_NAMES`); any
other key is an error (:meth:`Backend.from_config`).

Usage::

    python3 subtools/score/score_sets.py --chain submean-lda-norm-plda --train-dir EMB/voxceleb2_dev_aug \\
        --enroll-dir EMB/sitw_dev_enroll --test-dir EMB/sitw_dev_test \\
        --trials data/sitw_dev_test/trials/core-core.lst --scores OUT.score \\
        [--lda-dim 128] [--lda-total-covariance-factor 0.0] [--plda-iters 10] [--plda-smoothing 0.0] \\
        [--plda-simple-length-norm] [--cohort-dir EMB/voxceleb2_dev --asnorm-top-n 300] \\
        [--model-dir DIR] [--on-missing stop|skip]

Prints the metrics line when the trials carry target/nontarget labels.
"""
import argparse
import json
import os

from subtools.cli import run_cli
from subtools.kaldi.data_dir import read_spk2utt
from subtools.kaldi.fileio import atomic_write, read_table
from subtools.kaldi.fingerprint import scp_fingerprint
from subtools.score.asnorm import asnorm
from subtools.score.cosine import CosineScorer
from subtools.score.lda import compute_lda
from subtools.score.metrics import compute_all, format_line
from subtools.score.plda import Plda, PldaScorer
from subtools.score.trials import read_trials, resolve_trials, write_scores
from subtools.score.vectors import (apply_affine, concat, global_mean, length_norm, load_object,
                                    load_vectors, save_matrix, save_vector,
                                    speaker_means, subtract_mean)

PRE_STEPS = ("submean", "lda", "norm")
SCORERS = ("plda", "cosine")
BACKEND_ARGS = ("lda_dim", "lda_total_covariance_factor", "plda_iters", "plda_smoothing",
                "plda_simple_length_norm", "asnorm_top_n")
BACKEND_NAMES = ("plda_train_set", "cohort_set", "chain", "cosine_chain", "asnorm_chain")


def parse_chain(chain):
    """``"submean-lda-norm-plda-asnorm"`` -> (["submean", "lda", "norm"], "plda", True)."""
    steps = chain.split("-")
    use_asnorm = steps[-1] == "asnorm"
    if use_asnorm:
        steps = steps[:-1]
    if not steps or steps[-1] not in SCORERS:
        raise ValueError(f"chain '{chain}': must end with one of {SCORERS} (optionally then -asnorm)")
    bad = [s for s in steps[:-1] if s not in PRE_STEPS]
    if bad:
        raise ValueError(f"chain '{chain}': unknown step(s) {bad}; known: {PRE_STEPS + SCORERS + ('asnorm',)}")
    return steps[:-1], steps[-1], use_asnorm


class EmbeddingSet:
    """One embedding set dir: ``vectors`` (utterance VectorSet), ``utt2spk``, ``spk2utt``."""

    def __init__(self, path):
        scp = os.path.join(path, "xvector.scp")
        if not os.path.isfile(scp):
            raise FileNotFoundError(f"no embeddings: {scp} is missing")
        self.path = path
        self.vectors = load_vectors(scp)
        u2s = os.path.join(path, "utt2spk")
        s2u = os.path.join(path, "spk2utt")
        self.utt2spk = read_table(u2s) if os.path.isfile(u2s) else {}
        self.spk2utt = read_spk2utt(s2u) if os.path.isfile(s2u) else {}
        if not self.spk2utt and self.utt2spk:
            for utt, spk in self.utt2spk.items():
                self.spk2utt.setdefault(spk, []).append(utt)

    def side(self, keys):
        """Raw vectors for trial keys: utterance rows as they are, speaker keys averaged (counts n).

        Keys that are neither are left out (the trial lookup reports them).
        """
        keys = list(dict.fromkeys(keys))
        vs = self.vectors
        utts = vs.take([vs.index[k] for k in keys if k in vs.index])
        spks, _ = speaker_means(vs, {k: self.spk2utt[k] for k in keys
                                     if k not in vs.index and k in self.spk2utt})
        return concat([utts, spks])


class Backend:
    """A chain fitted on a training embedding set; scores trials between two embedding sets."""

    def __init__(self, chain, lda_dim=256, lda_total_covariance_factor=0.0, plda_iters=10,
                 plda_smoothing=0.0, plda_simple_length_norm=False, asnorm_top_n=300):
        self.chain = chain
        self.pre, self.scorer_name, self.use_asnorm = parse_chain(chain)
        self.lda_dim, self.lda_tcf, self.plda_iters = lda_dim, lda_total_covariance_factor, plda_iters
        self.plda_smoothing, self.plda_simple_length_norm = plda_smoothing, plda_simple_length_norm
        self.asnorm_top_n = asnorm_top_n
        self.params = []      # fitted parameter of each pre-processing step (mean / matrix / None)
        self.scorer = None
        self.cohort = None

    @classmethod
    def from_config(cls, chain, section, source="config"):
        """A Backend for ``chain`` from a ``backend:`` config section (dict); ValueError naming
        ``source`` and any key that is neither in BACKEND_ARGS nor in BACKEND_NAMES."""
        unknown = sorted(set(section) - set(BACKEND_ARGS) - set(BACKEND_NAMES))
        if unknown:
            raise ValueError(f"{source}: unknown backend key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(BACKEND_ARGS + BACKEND_NAMES)}")
        return cls(chain, **{k: section[k] for k in BACKEND_ARGS if k in section})

    def _description(self, train_path):
        pre = "-".join(self.pre + [self.scorer_name])
        # re-extracted embeddings (new arks, even at the same offsets) change the fingerprint -> refit
        stamp = scp_fingerprint(os.path.join(train_path, "xvector.scp"))
        return {"chain": pre, "train": os.path.abspath(train_path), "train_fingerprint": stamp,
                "lda_dim": self.lda_dim, "lda_total_covariance_factor": self.lda_tcf,
                "plda_iters": self.plda_iters}

    def _apply(self, i, X):
        step, p = self.pre[i], self.params[i]
        if step == "submean":
            return subtract_mean(X, p)
        if step == "lda":
            return apply_affine(X, p)
        return length_norm(X)

    def process(self, vs):
        """Apply the fitted pre-processing steps to a VectorSet."""
        X = vs.X
        for i in range(len(self.pre)):
            X = self._apply(i, X)
        return vs.with_matrix(X)

    def fit(self, train, model_dir=None, log=print):
        """Estimate the steps on ``train`` (EmbeddingSet), or load them from ``model_dir`` if current."""
        desc = self._description(train.path)
        params_json = model_dir and os.path.join(model_dir, "params.json")
        if params_json and os.path.isfile(params_json):
            with open(params_json) as f:
                if json.load(f) == desc:
                    self.load(model_dir)
                    log(f"back-end {desc['chain']}: reusing models in {model_dir}")
                    return self
        vs = train.vectors
        missing = [k for k in vs.keys if k not in train.utt2spk]
        if missing:
            raise ValueError(f"{train.path}/utt2spk: no speaker for {len(missing)} vector(s), first: "
                             f"{', '.join(missing[:5])}")
        spk = [train.utt2spk[k] for k in vs.keys]
        X = vs.X
        self.params = []
        for i, step in enumerate(self.pre):
            if step == "submean":
                self.params.append(global_mean(X))
            elif step == "lda":
                self.params.append(compute_lda(X, spk, self.lda_dim, self.lda_tcf))
            else:
                self.params.append(None)
            X = self._apply(i, X)
        model = Plda.train(X, spk, self.plda_iters) if self.scorer_name == "plda" else None
        log(f"back-end {desc['chain']}: trained on {len(vs)} vectors of {len(set(spk))} speakers "
            f"({train.path}), output dim {X.shape[1]}")
        if model_dir:
            self._save(model_dir, model, desc)
        self._set_scorer(model)
        return self

    def _set_scorer(self, model):
        """The scorer over ``model`` as trained (PLDA: smoothed here, as ivector-copy-plda)."""
        self.scorer = (PldaScorer(model.smooth_within(self.plda_smoothing),
                                  simple_length_norm=self.plda_simple_length_norm)
                       if self.scorer_name == "plda" else CosineScorer())

    def _file(self, model_dir, i):
        ext = {"submean": "vec", "lda": "mat"}[self.pre[i]]
        return os.path.join(model_dir, f"step{i}_{self.pre[i]}.{ext}")

    def _save(self, model_dir, model, desc):
        os.makedirs(model_dir, exist_ok=True)
        for i, step in enumerate(self.pre):
            if step == "submean":
                save_vector(self._file(model_dir, i), self.params[i])
            elif step == "lda":
                save_matrix(self._file(model_dir, i), self.params[i])
        if model is not None:
            model.save(os.path.join(model_dir, "plda.txt"))
        with atomic_write(os.path.join(model_dir, "params.json")) as f:
            json.dump(desc, f, indent=1)

    def load(self, model_dir):
        """Load the fitted steps and scorer that :meth:`fit` saved in ``model_dir`` (returns self)."""
        self.params = [load_object(self._file(model_dir, i)) if s != "norm" else None
                       for i, s in enumerate(self.pre)]
        model = Plda.load(os.path.join(model_dir, "plda.txt")) if self.scorer_name == "plda" else None
        self._set_scorer(model)
        return self

    def set_cohort(self, cohort_set):
        """Cohort for AS-norm: the speaker means of ``cohort_set`` (EmbeddingSet), processed."""
        means, _ = speaker_means(cohort_set.vectors, cohort_set.spk2utt)
        if not len(means):
            raise ValueError(f"{cohort_set.path}: no cohort speaker has a vector (spk2utt missing?)")
        self.cohort = self.process(means)

    def score(self, trials, enroll, test, on_missing="stop"):
        """Score ``trials`` between EmbeddingSets ``enroll`` and ``test``.

        Returns (kept trials, scores [M']) -- trials naming absent vectors are handled by ``on_missing``.
        """
        E = self.process(enroll.side(trials.enroll))
        T = self.process(test.side(trials.test))
        ie, it, keep = resolve_trials(trials, E, T, on_missing,
                                      f"{enroll.path} (utterances and spk2utt speakers)", test.path)
        if not keep.any():
            raise ValueError(f"{trials.source}: no trial has both vectors")
        scores = self.scorer.pairs(self.scorer.enroll_side(E), self.scorer.test_side(T), ie, it)
        if self.use_asnorm:
            if self.cohort is None:
                raise ValueError(f"chain '{self.chain}' needs a cohort set (--cohort-dir / backend.cohort_set)")
            scores = asnorm(self.scorer, E, T, self.cohort, ie, it, scores, self.asnorm_top_n)
        return trials.subset(keep), scores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chain", default="submean-lda-norm-plda")
    p.add_argument("--train-dir", required=True, help="embedding set the back-end is trained on")
    p.add_argument("--enroll-dir", required=True)
    p.add_argument("--test-dir", required=True)
    p.add_argument("--trials", required=True)
    p.add_argument("--scores", required=True, help="output 'enroll test score' file")
    p.add_argument("--lda-dim", type=int, default=256)
    p.add_argument("--lda-total-covariance-factor", type=float, default=0.0,
                   help="LDA normalises f T + (1 - f) W (Kaldi ivector-compute-lda; default 0.0)")
    p.add_argument("--plda-iters", type=int, default=10)
    p.add_argument("--plda-smoothing", type=float, default=0.0,
                   help="PLDA within-class smoothing (Kaldi ivector-copy-plda --smoothing; default 0.0)")
    p.add_argument("--plda-simple-length-norm", action="store_true")
    p.add_argument("--cohort-dir", help="AS-norm cohort embedding set (speaker means are used)")
    p.add_argument("--asnorm-top-n", type=int, default=300, help="AS-norm top-N cohort scores")
    p.add_argument("--model-dir", help="save / reuse the trained steps here")
    p.add_argument("--on-missing", choices=["stop", "skip"], default="stop",
                   help="trials naming absent vectors: stop (default) or skip them")
    args = p.parse_args(argv)
    backend = Backend(args.chain, **{k: getattr(args, k) for k in BACKEND_ARGS})
    backend.fit(EmbeddingSet(args.train_dir), args.model_dir)
    if backend.use_asnorm:
        if not args.cohort_dir:
            p.error(f"chain '{args.chain}' needs --cohort-dir")
        backend.set_cohort(EmbeddingSet(args.cohort_dir))
    trials = read_trials(args.trials)
    kept, scores = backend.score(trials, EmbeddingSet(args.enroll_dir), EmbeddingSet(args.test_dir),
                                 args.on_missing)
    write_scores(args.scores, kept, scores)
    print(f"scored {len(kept)} trials -> {args.scores}")
    if kept.labels is not None:
        print(format_line(compute_all(scores, kept.labels)))


if __name__ == "__main__":
    run_cli(main)
