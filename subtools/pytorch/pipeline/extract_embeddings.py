#!/usr/bin/env python3
"""Extract utterance embeddings (x-vectors) of a data dir with a trained model (launcher stage 4).

    python3 subtools/pytorch/pipeline/extract_embeddings.py --model-dir EXP --epoch E --nj N \\
        [--position far|near] [--device cpu|cuda] DATA OUTDIR

``--epoch``: a number N (``EXP/N.params``) or ``avg`` (``EXP/avg.params``, average_checkpoints.py).
On cuda the jobs compute in full float32 (TF32 off for matmuls and cuDNN convolutions), so the
embeddings equal the CPU's to float32 rounding, not to TF32's 10-bit mantissa.

Per utterance of ``DATA/feats.scp`` (needs ``DATA/vad.scp``): Kaldi sliding CMN (window
``--cmn-window``, centred), keep the voiced frames, then the model's ``extract_embedding`` on the whole
utterance. Utterances longer than ``--max-chunk-frames`` are cut as ASV-subtools' extractor does:
n = ceil(T / max) chunks, the first n-1 of floor(T / n) frames and the rest in the last, whose embeddings
are averaged weighted by their frame counts. Utterances shorter than ``max(--min-frames, the model's
min_frames())`` are repeated cyclically up to that length (a zero-padded model takes any length; an
unpadded one needs more frames than its contexts consume).
Policy for bad input: an utterance with 0 voiced frames, a VAD of another length, or no vad.scp
entry, is skipped and listed in ``OUTDIR/skipped`` ("utt reason"); a missing or unreadable feature
matrix fails its job (the command stops; a rerun redoes only that job).

The jobs are :func:`subtools.kaldi.ark_jobs.run_jobs` jobs (spawned processes, the model loaded once
per job): ``OUTDIR/xvector.<j>.{ark,scp,done,...}`` per job j (1..N; the utterance list is cut into N
contiguous parts), merged ``OUTDIR/xvector.scp``, and ``utt2spk``/``spk2utt`` of DATA restricted to the
embedded utterances. A job is redone unless its ``.done`` stamp matches: same utterances, same feature
and VAD arks (file identities), same options and the same checkpoint **content** (sha1), so a retrained
model (``--train-stage 0``, a new ``N.params``) is always re-extracted, never served stale.
``xvector.scp`` is written last. The command holds the lock of OUTDIR (another run on it: stop, or
``--wait``). ``--epoch N`` without ``MODEL_DIR/N.params`` stops before creating anything.
``--cmd`` runs the jobs through a Kaldi-style runner instead (``local``, ``slurm --gres gpu:1 ...``,
``queue.pl ...``; logs ``OUTDIR/log/xvector.<j>.log``; see :mod:`subtools.parallel.dispatch`).
"""
import argparse
import functools
import logging
import math
import os
import sys

import numpy as np
import torch

from subtools.cli import run_cli
from subtools.kaldi.ark_jobs import run_jobs
from subtools.kaldi.data_dir import utt2spk_to_spk2utt, write_spk2utt
from subtools.kaldi.fileio import read_table, write_lines, write_table
from subtools.kaldi.fingerprint import content_hash
from subtools.kaldi.lock import WAIT_HELP
from subtools.kaldi.nosil import NosilWorker, nosil_item
from subtools.parallel import dispatch
from subtools.pytorch.libs.support.utils import setup_logging
from subtools.pytorch.libs.training.checkpoint import TRUST_HELP, load_model, parse_epoch, require_checkpoint

logger = logging.getLogger("extract")
CHECKPOINT_RECORD = "checkpoint.sha1"   # OUTDIR/checkpoint.sha1: the sha1 of the checkpoint the set was made with


def embed_utterance(model, feats, max_chunk_frames=10000, min_frames=1, position="far", device="cpu"):
    """Embedding ``[E]`` (float32 numpy) of one utterance ``feats: [T, F]`` (already CMN'd, voiced)."""
    min_frames = max(min_frames, model.min_frames())
    num_frames = feats.shape[0]
    if num_frames < min_frames:
        feats = feats[np.arange(min_frames) % num_frames]
        num_frames = min_frames
    pieces = math.ceil(num_frames / max_chunk_frames)
    size = num_frames // pieces
    bounds = [k * size for k in range(pieces)] + [num_frames]
    total = 0.0
    with torch.no_grad():
        for start, end in zip(bounds, bounds[1:]):
            x = torch.from_numpy(np.ascontiguousarray(feats[start:end].T))[None].to(device)
            total = total + (end - start) * model.extract_embedding(x, position=position)[0].double().cpu()
    return (total / num_frames).float().numpy()


class EmbeddingWorker:
    """Job worker for :func:`~subtools.kaldi.ark_jobs.run_jobs`: (utt, feats/vad entries) -> embedding
    ``[E]``; loads the model once per job, in the job's process."""

    def __init__(self, model_dir, epoch, position, max_chunk_frames, min_frames, cmn_window, device, threads,
                 trust_blueprint=False):
        torch.set_num_threads(threads)
        if torch.device(device).type == "cuda":   # this job's process: no TF32 (see module docstring)
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        self.model = load_model(model_dir, epoch, trust_blueprint).to(device)
        self.frames = NosilWorker(cmn_window)
        self.options = dict(max_chunk_frames=max_chunk_frames, min_frames=min_frames, position=position,
                            device=device)

    def __call__(self, utt, value):
        voiced = self.frames(utt, value)
        return embed_utterance(self.model, voiced.astype(np.float32), **self.options)


def extract(model_dir, epoch, data_dir, out_dir, nj=1, position="far", max_chunk_frames=10000, min_frames=1,
            cmn_window=300, device="cpu", force=False, wait=False, trust_blueprint=False, cmd="", job=None):
    """Extract the embeddings of ``data_dir`` into ``out_dir`` (see module docstring). Returns the list of
    skipped utterance lines. ``cmd``: the jobs' runner (``--cmd``); ``job``: this process is that dispatched
    job (a OneJob): it returns None."""
    checkpoint = require_checkpoint(model_dir, epoch)
    load_model(model_dir, epoch, trust_blueprint)  # an untrusted blueprint or a bad checkpoint stops here
    for name in ("feats.scp", "vad.scp"):
        if not os.path.isfile(os.path.join(data_dir, name)):
            raise FileNotFoundError(f"{data_dir}/{name}: missing (make the set's features and VAD first: "
                                    "make_features.py, compute_vad.py)")
    job_args = ["--model-dir", model_dir, "--epoch", epoch, "--nj", nj, "--position", position, "--max-chunk-frames",
                max_chunk_frames, "--min-frames", min_frames, "--cmn-window", cmn_window, "--device", device,
                *(["--trust-blueprint"] if trust_blueprint else []), data_dir, out_dir]
    runner = dispatch.stage_dispatch(cmd, job, __file__, job_args, os.path.join(out_dir, "log"))
    with dispatch.output_lock(out_dir, wait, f"embedding dir {out_dir}", job):
        return _extract(model_dir, epoch, checkpoint, data_dir, out_dir, nj, position, max_chunk_frames,
                        min_frames, cmn_window, device, force, trust_blueprint, runner)


def _extract(model_dir, epoch, checkpoint, data_dir, out_dir, nj, position, max_chunk_frames, min_frames,
             cmn_window, device, force, trust_blueprint, runner):
    final_scp = os.path.join(out_dir, "xvector.scp")
    if force:
        for name in os.listdir(out_dir):
            if name.startswith(("xvector.", "skipped")):
                os.remove(os.path.join(out_dir, name))
    feats_scp = read_table(os.path.join(data_dir, "feats.scp"))
    vad_scp = read_table(os.path.join(data_dir, "vad.scp"))
    failed = {u: "no vad.scp entry" for u in feats_scp if u not in vad_scp}
    items = [(u, nosil_item(e, vad_scp[u])) for u, e in sorted(feats_scp.items()) if u in vad_scp]
    nj = max(1, min(nj, len(items)))
    threads = max(1, (os.cpu_count() or 1) // nj)
    utt2spk_path = os.path.join(data_dir, "utt2spk")
    weights = content_hash(checkpoint)
    record = [os.path.join(model_dir, "config", n) for n in ("blueprint.py", "params.dict")]
    stamp = (f"checkpoint={weights} " + " ".join(f"{os.path.basename(path)}={content_hash(path)}" for path in record)
             + f" position={position} max_chunk_frames={max_chunk_frames} min_frames={min_frames} "
               f"cmn_window={cmn_window}")
    make_worker = functools.partial(EmbeddingWorker, model_dir, epoch, position, max_chunk_frames, min_frames,
                                    cmn_window, device, threads, trust_blueprint)
    outputs = [os.path.join(out_dir, name) for name in ("skipped", "utt2spk", "spk2utt", CHECKPOINT_RECORD,
                                                        "xvector.scp")]
    result = run_jobs(items, make_worker, os.path.abspath(out_dir), "xvector", nj, config_stamp=stamp,
                      outputs=outputs, start_method="spawn", dispatch=runner,
                      merge_stamp=f"utt2spk={content_hash(utt2spk_path)} skipped={sorted(failed.items())}")
    if result is None:   # a dispatched job: its parent merges
        return None
    failed.update(result.failed)
    skipped = [f"{u} {reason}" for u, reason in sorted(failed.items())]
    if skipped:
        logger.warning("%s: %d utterances skipped (listed in %s/skipped), e.g. %s", data_dir, len(skipped),
                       out_dir, skipped[0])
    if result.current:
        logger.info("%s is complete (%d embeddings of %s)", final_scp, len(result.scp), data_dir)
        return skipped
    write_lines(os.path.join(out_dir, "skipped"), skipped)
    utt2spk = {u: s for u, s in read_table(utt2spk_path).items() if u in result.scp}
    write_table(os.path.join(out_dir, "utt2spk"), utt2spk)
    write_spk2utt(os.path.join(out_dir, "spk2utt"), utt2spk_to_spk2utt(utt2spk))
    write_lines(os.path.join(out_dir, CHECKPOINT_RECORD), [weights])
    write_table(final_scp, result.scp)
    result.mark_current()
    return skipped


def made_with(out_dir, checkpoint_sha1):
    """Whether the embeddings of ``out_dir`` were extracted with the checkpoint whose content has this sha1
    (``content_hash`` of the current checkpoint, hashed once by the caller: gather_results and export_model
    check this before using them): None when that cannot be told (embeddings from elsewhere, without
    ``checkpoint.sha1``, or no checkpoint to compare with: ``checkpoint_sha1`` "missing")."""
    record = os.path.join(out_dir, CHECKPOINT_RECORD)
    if not os.path.isfile(record) or checkpoint_sha1 == "missing":
        return None
    with open(record) as f:
        return f.read().strip() == checkpoint_sha1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="experiment dir (with config/ and <epoch>.params)")
    p.add_argument("--epoch", type=parse_epoch, required=True,
                   help="use MODEL_DIR/<epoch>.params; avg: MODEL_DIR/avg.params (average_checkpoints.py)")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs")
    p.add_argument("--position", choices=["far", "near"], default="far")
    p.add_argument("--max-chunk-frames", type=int, default=10000)
    p.add_argument("--min-frames", type=int, default=1,
                   help="repeat shorter utterances up to this length (at least the model's own minimum)")
    p.add_argument("--cmn-window", type=int, default=300)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--force", action="store_true", help="redo every job even if it is complete")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.add_argument("--trust-blueprint", action="store_true", help=TRUST_HELP)
    dispatch.add_options(p)
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    args = p.parse_args(argv)
    job = dispatch.job_from_args(p, args)
    if job is not None and args.force:
        p.error("--force applies to the whole stage, not to one dispatched --job")
    setup_logging()
    run_cli(extract, args.model_dir, args.epoch, args.data_dir, args.out_dir, args.nj, args.position,
            args.max_chunk_frames, args.min_frames, args.cmn_window, args.device, args.force, args.wait,
            args.trust_blueprint, args.cmd, job)


if __name__ == "__main__":
    sys.exit(main())
