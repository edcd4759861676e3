#!/usr/bin/env python3
"""Use a trained speaker model (a package of subtools/pytorch/pipeline/export_model.py) on any audio.

    python3 subtools/speaker.py embed  --model MODEL --out OUTDIR FILE [FILE ...]
    python3 subtools/speaker.py embed  --model MODEL --out OUTDIR --wav-scp SCP
    python3 subtools/speaker.py verify --model MODEL ENROLL[,ENROLL2,...] TEST
    python3 subtools/speaker.py score  --model MODEL --wav-scp SCP --trials TRIALS --out SCORES [--llr]

Examples (the demo's model, after `make demo`):

    python3 subtools/speaker.py verify --model exp/mini_serialized/model \\
        data/mini_corpus/wav/te0001/te0001-0001.wav,data/mini_corpus/wav/te0001/te0001-0002.wav \\
        data/mini_corpus/wav/te0001/te0001-0003.wav
    python3 subtools/speaker.py embed --model exp/mini_serialized/model --out emb call.mp3 meeting.m4a
    python3 subtools/score/score_sets.py ... --test-dir emb      # the back-end CLIs read OUTDIR/xvector.scp

* ``embed`` writes ``OUTDIR/xvector.{ark,scp}`` (Kaldi float vectors) keyed by the wav.scp keys, or by the
  file names without their extension (two files with one name are an error).
* ``verify`` prints, as its last line, ``score=<raw> llr=<calibrated> decision=target|nontarget``: the
  back-end score, the package's calibration of it, and the Bayes decision at the package's target prior
  (``--p-target`` to choose another). Several enrollment files (comma-separated) are embedded and averaged
  as the back-end does for SITW models.
* ``score`` writes a Kaldi score file (``enroll test score``) of the trials between wav.scp utterances,
  raw or (``--llr``) calibrated.

Audio: any file libsndfile (wav, flac, ...) or FFmpeg's decoders (mp3, ogg, opus, m4a, ..., in process)
read, any sample rate and channel count (resampled to the model's rate and down-mixed, with a one-line
notice), and wav.scp pipe entries (``cmd |``). ``--runtime torchscript|onnx`` runs the package's exported network
instead of the PyTorch model. Bad input (a missing or unreadable file, audio without a voiced frame, a
model dir missing a part) stops with one line naming it and exit status 1; no output is written then.
"""
import argparse
import logging
import os
import sys

from subtools.cli import run_cli
from subtools.inference import SpeakerModel
from subtools.inference.network import RUNTIMES
from subtools.kaldi.fileio import read_table
from subtools.pytorch.libs.training.checkpoint import TRUST_HELP
from subtools.score.trials import Trials, read_trials, write_scores
from subtools.score.vectors import save_vectors


def load(args):
    return SpeakerModel.load(args.model, args.runtime, args.trust_blueprint, args.threads)


def file_keys(paths):
    """``{name without extension: path}``; ValueError naming two files that share a name."""
    table = {}
    for path in paths:
        key = os.path.splitext(os.path.basename(path))[0]
        if key in table:
            raise ValueError(f"{table[key]} and {path} have the same name '{key}' (the embedding key); use --wav-scp "
                             "to give them keys")
        table[key] = path
    return table


def embed(args):
    sources = read_table(args.wav_scp) if args.wav_scp else file_keys(args.files)
    vectors = load(args).embed_table(sources)
    scp = os.path.join(args.out, "xvector.scp")
    if os.path.exists(scp):
        os.remove(scp)   # never an old scp beside a new ark
    save_vectors(vectors, scp)
    print(f"{len(vectors)} embeddings ({vectors.dim}-dim) -> {scp}")


def verify(args):
    model = load(args)
    enroll = [path for path in args.enroll.split(",") if path]
    raw, llr, decision = model.trial(enroll, args.test, args.p_target)
    print(f"score={raw:.6f} llr={llr:.6f} decision={decision}")


def score(args):
    model = load(args)
    trials = read_trials(args.trials)
    wav = read_table(args.wav_scp)
    keys = list(dict.fromkeys(trials.enroll + trials.test))
    absent = [k for k in keys if k not in wav]
    if absent:
        raise ValueError(f"{args.trials}: {len(absent)} trial keys are not in {args.wav_scp}, first: "
                         f"{', '.join(absent[:5])}")
    if args.llr:
        model.llr(0.0)   # a package without calibration stops before any audio is read
    vectors = model.embed_table({k: wav[k] for k in keys})
    scores = model.score_trials(trials, vectors, vectors)
    write_scores(args.out, Trials(trials.enroll, trials.test), model.llr(scores) if args.llr else scores)
    print(f"{len(trials)} trials ({'calibrated LLRs' if args.llr else 'raw scores'}) -> {args.out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="model package dir (export_model.py --out)")
    common.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="torch (default), torchscript (network.ts) or onnx (network.onnx, onnxruntime)")
    common.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: one utterance at a time gains little from more, and loses much "
                             "on a busy machine)")
    common.add_argument("--trust-blueprint", action="store_true", help=TRUST_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed", parents=[common], help="embeddings of audio files -> OUTDIR/xvector.{ark,scp}")
    e.add_argument("--out", required=True, help="output dir")
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav-scp", help="Kaldi wav.scp (keys = its keys)")
    source.add_argument("files", nargs="*", default=[], help="audio files (keys = names without extension)")
    v = sub.add_parser("verify", parents=[common], help="one trial: are ENROLL and TEST the same speaker?")
    v.add_argument("--p-target", type=float, help="target prior of the decision (default: the package's)")
    v.add_argument("enroll", help="enrollment audio file(s), comma-separated")
    v.add_argument("test", help="test audio file")
    s = sub.add_parser("score", parents=[common], help="score a trials list between wav.scp utterances")
    s.add_argument("--wav-scp", required=True)
    s.add_argument("--trials", required=True, help="Kaldi trials 'enroll test [target|nontarget]'")
    s.add_argument("--out", required=True, help="score file to write")
    s.add_argument("--llr", action="store_true", help="write calibrated LLRs instead of raw scores")
    args = p.parse_args(argv)
    if args.command == "embed" and args.wav_scp is None and not args.files:
        p.error("embed: give audio files or --wav-scp")
    logging.basicConfig(level=logging.INFO, format="speaker.py: %(message)s", stream=sys.stderr)
    run_cli({"embed": embed, "verify": verify, "score": score}[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
