"""Score every test set of an experiment and print one results table (called by
``recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh``).

Reads ``EXP/config/config.yaml`` (keys ``backend``, ``test_sets``, ``extract.epochs``,
``extract.position``), and for each epoch E scores each test set with the chosen back-end on the
embeddings in ``EXP/<P>_epoch_<E>/`` (P = ``extract.position``, default ``far``, as stage 4 writes them):

* ``--backend plda``   -> ``backend.chain``          (default ``submean-lda-norm-plda``)
* ``--backend cosine`` -> ``backend.cosine_chain``   (default ``submean-norm-cosine``)
* ``--backend asnorm`` -> ``backend.asnorm_chain``   (default: the cosine chain + ``-asnorm``;
  cohort ``backend.cohort_set``, top N ``backend.asnorm_top_n``)

The back-end is trained on ``EXP/<P>_epoch_<E>/<backend.plda_train_set>`` (models cached in
``EXP/<P>_epoch_<E>/backend/<train_set>/<chain>/``). Outputs:

* scores  ``EXP/<P>_epoch_<E>/scores/<backend>/<test set>.score``
* table   ``EXP/<backend>.results`` (also printed): epoch, set, trials, EER %, minDCF(0.01), minDCF(0.001),
  then their 95 % bootstrap intervals (``--ci`` draws, default 1000, resampling enrollment speakers,
  ``--ci-by trial`` for single trials; seed 0, so a table is reproducible; see subtools/score/bootstrap.py)
* DET     ``EXP/det_<backend>_epoch<E>.png`` (all test sets of the epoch on one plot)

``--calibrated`` adds the calibration-sensitive columns Cllr, minCllr, actDCF(0.01), actDCF(0.001) of the
scores read as log-likelihood ratios (subtools/score/calibration.py); ``--calibration CAL`` (a file of
``calibrate.py train``, e.g. a model package's ``calibration.json``) maps the scores through it first
(the score files stay raw; EER and minDCF do not change under that monotone map).

A test set whose embeddings or trials file is missing is skipped with a message. Trials naming
absent vectors are skipped and reported (``--on-missing stop`` to stop instead).
"""
import argparse
import os
import sys

import yaml

from subtools import resolve_path
from subtools.cli import run_cli
from subtools.kaldi.fileio import atomic_write
from subtools.kaldi.fingerprint import content_hash
from subtools.pytorch.libs.training.checkpoint import checkpoint_path
from subtools.pytorch.pipeline.extract_embeddings import made_with
from subtools.score.bootstrap import bootstrap_metrics, interval_cells, resampling_units, system_draws
from subtools.score.calibration import DCF_PRIORS, LinearCalibration, calibration_metrics
from subtools.score.metrics import compute_all, plot_det
from subtools.score.score_sets import Backend, EmbeddingSet
from subtools.score.trials import read_trials, write_scores

HEADER = ("epoch", "test set", "trials", "EER(%)", "minDCF(0.01)", "minDCF(0.001)", "EER CI95",
          "minDCF(0.01) CI95", "minDCF(0.001) CI95")
CALIBRATION_HEADER = ("Cllr", "minCllr", *(f"actDCF({p:g})" for p in DCF_PRIORS))
CI_SEED = 0


def chain_for(backend, cfg):
    """The chain string of ``backend`` (plda | cosine | asnorm) from the config's ``backend`` section."""
    cosine = cfg.get("cosine_chain", "submean-norm-cosine")
    chains = {"plda": cfg.get("chain", "submean-lda-norm-plda"), "cosine": cosine,
              "asnorm": cfg.get("asnorm_chain", cosine + "-asnorm")}
    return chains[backend]


def format_table(rows, header=HEADER, left=(0, 1)):
    """Aligned text table of ``rows`` (tuples of strings) under ``header``; the columns numbered in
    ``left`` are left-aligned (names), the others right-aligned (numbers)."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header] + rows]
    return "\n".join(lines)


def interval_columns(trials, scores, n_draws, by, log=print):
    """The three CI95 cells of one scored test set (``-`` with a message if no interval can be drawn)."""
    try:
        units, _ = resampling_units(trials.enroll, by, source=trials.source)
        return interval_cells(system_draws(bootstrap_metrics([scores], trials.labels, units, n_draws, CI_SEED), 0))
    except ValueError as e:
        log(f"no interval for {trials.source}: {e}")
        return ["-"] * 3


def calibration_cells(scores, labels, calibration=None):
    """The CALIBRATION_HEADER cells of scores read as LLRs (after ``calibration`` when given)."""
    llrs = calibration.apply(scores) if calibration else scores
    m = calibration_metrics(llrs, labels)
    return [f"{m['cllr']:.4f}", f"{m['min_cllr']:.4f}", *(f"{m[f'act_dcf_{p:g}']:.4f}" for p in DCF_PRIORS)]


def unusable_sets(dirs, checkpoint, checkpoint_sha1):
    """Why some embedding dirs of ``dirs`` cannot be scored ("" when all can): no ``xvector.scp``, or made
    with another content of ``checkpoint`` than the current one, ``checkpoint_sha1`` (retrained or
    re-averaged since stage 4; sets whose checkpoint cannot be told, e.g. embeddings made elsewhere, are
    scored)."""
    missing = [d for d in dict.fromkeys(dirs) if not os.path.isfile(os.path.join(d, "xvector.scp"))]
    if missing:
        return "missing: " + ", ".join(f"{d}/xvector.scp" for d in missing)
    stale = [d for d in dict.fromkeys(dirs) if made_with(d, checkpoint_sha1) is False]
    if stale:
        return (f"made with another {os.path.basename(checkpoint)} (it changed since they were extracted; rerun "
                "launcher stage 4): " + ", ".join(stale))
    return ""


def gather(exp, backend_name, epochs=None, chain=None, on_missing="skip", log=print, ci=1000, ci_by="speaker",
           calibrated=False, calibration=None):
    """Score all test sets for all epochs; returns the table text (also saved and printed). ``calibrated``:
    add the CALIBRATION_HEADER columns; ``calibration``: a calibration file applied before them."""
    calibration_path, calibration = calibration, calibration and LinearCalibration.load(calibration)
    cfg_path = os.path.join(exp, "config", "config.yaml")
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f) or {}
    bcfg = cfg.get("backend") or {}
    test_sets = cfg.get("test_sets") or []
    if not test_sets:
        raise ValueError(f"{cfg_path}: no test_sets listed")
    epochs = epochs or (cfg.get("extract") or {}).get("epochs") or []
    if not epochs:
        raise ValueError(f"{cfg_path}: no extract.epochs and no --epochs given")
    chain = chain or chain_for(backend_name, bcfg)
    train_name = bcfg.get("plda_train_set")
    if not train_name:
        raise ValueError(f"{cfg_path}: backend.plda_train_set is not set")
    position = (cfg.get("extract") or {}).get("position") or "far"
    rows = []
    for epoch in epochs:
        emb = os.path.join(exp, f"{position}_epoch_{epoch}")
        train_dir = os.path.join(emb, train_name)
        checkpoint = checkpoint_path(exp, epoch)
        checkpoint_sha1 = content_hash(checkpoint)   # once per epoch: a checkpoint may be hundreds of MB
        unusable = unusable_sets([train_dir], checkpoint, checkpoint_sha1)
        if unusable:
            log(f"SKIP epoch {epoch}: back-end training embeddings {unusable}")
            continue
        backend = Backend.from_config(chain, bcfg, f"{cfg_path}: backend")
        backend.fit(EmbeddingSet(train_dir),
                    os.path.join(emb, "backend", train_name, chain.replace("-asnorm", "")), log=log)
        if backend.use_asnorm:
            cohort = os.path.join(emb, bcfg.get("cohort_set", train_name))
            unusable = unusable_sets([cohort], checkpoint, checkpoint_sha1)
            if unusable:
                log(f"SKIP epoch {epoch}: AS-norm cohort embeddings {unusable}")
                continue
            backend.set_cohort(EmbeddingSet(cohort))
        sets = {}
        systems = []
        for ts in test_sets:
            name = ts["name"]
            dirs = [os.path.join(emb, ts["enroll"]), os.path.join(emb, ts["test"])]
            unusable = unusable_sets(dirs, checkpoint, checkpoint_sha1)
            trials_path = resolve_path(ts["trials"])
            if unusable:
                log(f"SKIP {name} (epoch {epoch}): embeddings {unusable}")
                continue
            if not os.path.isfile(trials_path):
                log(f"SKIP {name} (epoch {epoch}): trials file missing: {trials_path}")
                continue
            for d in dirs:
                if d not in sets:
                    sets[d] = EmbeddingSet(d)
            trials = read_trials(trials_path, need_labels=True)
            kept, scores = backend.score(trials, sets[dirs[0]], sets[dirs[1]], on_missing)
            write_scores(os.path.join(emb, "scores", backend_name, f"{name}.score"), kept, scores)
            m = compute_all(scores, kept.labels)
            n = f"{len(kept)}" if len(kept) == len(trials) else f"{len(kept)}/{len(trials)}"
            rows.append((str(epoch), name, n, f"{m['eer']:.3f}", f"{m['mindcf_0.01']:.4f}",
                         f"{m['mindcf_0.001']:.4f}", *interval_columns(kept, scores, ci, ci_by, log),
                         *(calibration_cells(scores, kept.labels, calibration) if calibrated or calibration else [])))
            systems.append((name, scores, kept.labels))
        if systems:
            det = os.path.join(exp, f"det_{backend_name}_epoch{epoch}.png")
            plot_det(systems, det, title=f"{os.path.basename(os.path.normpath(exp))} epoch {epoch} "
                                         f"({backend_name})")
            log(f"DET curves -> {det}")
    if not rows:
        raise ValueError(f"{exp}: nothing scored (see the SKIP messages above)")
    header = HEADER + (CALIBRATION_HEADER if calibrated or calibration else ())
    table = (f"# {exp}  backend={backend_name}  chain={chain}  trained on {train_name}"
             + (f"  calibration={calibration_path}" if calibration else "") + "\n" + format_table(rows, header))
    with atomic_write(os.path.join(exp, f"{backend_name}.results")) as f:
        f.write(table + "\n")
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp", help="experiment dir (holds config/config.yaml and <position>_epoch_<E>/)")
    p.add_argument("--epochs", help='space-separated epochs, e.g. "6 7" (default: extract.epochs)')
    p.add_argument("--backend", choices=["plda", "cosine", "asnorm"], default="plda")
    p.add_argument("--chain", help="override the chain named in the config")
    p.add_argument("--on-missing", choices=["stop", "skip"], default="skip",
                   help="trials naming absent vectors: skip and report (default) or stop")
    p.add_argument("--ci", type=int, default=1000, metavar="N", help="bootstrap draws of the 95 %% intervals")
    p.add_argument("--ci-by", choices=["speaker", "trial"], default="speaker",
                   help="resampling unit: speaker of the enroll key (default) or trial")
    p.add_argument("--calibrated", action="store_true",
                   help="add Cllr, minCllr, actDCF(0.01), actDCF(0.001) of the scores read as LLRs")
    p.add_argument("--calibration", metavar="CAL",
                   help="calibration file (calibrate.py train) applied to the scores before those columns")
    args = p.parse_args(argv)
    if args.ci < 1:
        p.error("--ci needs at least 1 draw")
    epochs = args.epochs.split() if args.epochs else None
    try:
        table = gather(args.exp, args.backend, epochs, args.chain, args.on_missing, ci=args.ci, ci_by=args.ci_by,
                       calibrated=args.calibrated, calibration=args.calibration)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"gather_results: {e}")
    print(table)
    print(f"saved -> {os.path.join(args.exp, args.backend + '.results')}")


if __name__ == "__main__":
    run_cli(main)
