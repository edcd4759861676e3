#!/usr/bin/env python3
"""Extract utterance embeddings (x-vectors) of a data dir with a trained model (launcher stage 4).

    python3 subtools/pytorch/pipeline/extract_embeddings.py --model-dir EXP --epoch E --nj N \\
        [--position far|near] [--device cpu|cuda] DATA OUTDIR

Per utterance of ``DATA/feats.scp`` (needs ``DATA/vad.scp``): Kaldi sliding CMN (window
``--cmn-window``, centred), keep the voiced frames, then the model's ``extract_embedding`` on the whole
utterance. Utterances longer than ``--max-chunk-frames`` are cut into ``ceil(T / max)`` near-equal
chunks whose embeddings are averaged weighted by their frame counts; utterances shorter than
``--min-frames`` (the network's context) are repeated cyclically up to that length.
Policy for bad input: an utterance with 0 voiced frames, or without a vad.scp entry, is skipped and
listed in ``OUTDIR/skipped`` ("utt reason"); a missing or unreadable feature matrix stops the job with
an error naming the utterance.

Outputs: ``OUTDIR/xvector.<j>.{ark,scp}`` per job j (1..N; the utterance list is cut into N contiguous
parts), merged ``OUTDIR/xvector.scp``, and ``utt2spk``/``spk2utt`` of DATA restricted to the embedded
utterances. A job whose scp exists is complete and is not redone; ``xvector.scp`` is written last and
marks the set complete (rerunning skips it unless ``--force``).
"""
import argparse
import concurrent.futures
import logging
import math
import multiprocessing
import os
import sys

import kaldiio
import numpy as np
import torch

from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.data_dir import utt2spk_to_spk2utt
from subtools.kaldi.fileio import read_table, write_lines, write_table
from subtools.kaldi.vad import select_voiced
from subtools.pytorch.libs.support.utils import setup_logging
from subtools.pytorch.libs.training.checkpoint import load_model

logger = logging.getLogger("extract")


def embed_utterance(model, feats, max_chunk_frames=10000, min_frames=25, position="far", device="cpu"):
    """Embedding ``[E]`` (float32 numpy) of one utterance ``feats: [T, F]`` (already CMN'd, voiced)."""
    num_frames = feats.shape[0]
    if num_frames < min_frames:
        feats = feats[np.arange(min_frames) % num_frames]
        num_frames = min_frames
    pieces = np.array_split(np.arange(num_frames), math.ceil(num_frames / max_chunk_frames))
    total = 0.0
    with torch.no_grad():
        for idx in pieces:
            x = torch.from_numpy(np.ascontiguousarray(feats[idx[0]:idx[-1] + 1].T))[None].to(device)
            total = total + len(idx) * model.extract_embedding(x, position=position)[0].double().cpu()
    return (total / num_frames).float().numpy()


def _job(args):
    (job, utts, feats_scp, vad_scp, model_dir, epoch, out_dir, position, max_chunk_frames, min_frames,
     cmn_window, device, threads) = args
    scp = os.path.join(out_dir, f"xvector.{job}.scp")
    skipped_path = os.path.join(out_dir, f"skipped.{job}")
    if os.path.exists(scp):
        return scp, skipped_path
    torch.set_num_threads(threads)
    model = load_model(model_dir, epoch).to(device)
    ark = os.path.join(out_dir, f"xvector.{job}.ark")
    tmp_scp = scp + ".tmp"
    skipped = []
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
        for utt in utts:
            if utt not in vad_scp:
                skipped.append(f"{utt} no vad.scp entry")
                continue
            try:
                feats = kaldiio.load_mat(feats_scp[utt])
                vad = kaldiio.load_mat(vad_scp[utt])
            except Exception as e:
                raise RuntimeError(f"utterance {utt}: cannot read features/VAD ({e})") from e
            voiced = select_voiced(sliding_cmn(feats, window=cmn_window), np.asarray(vad).reshape(-1))
            if voiced.shape[0] == 0:
                skipped.append(f"{utt} 0 voiced frames")
                continue
            writer(utt, embed_utterance(model, voiced.astype(np.float32), max_chunk_frames, min_frames,
                                        position, device))
    write_lines(skipped_path, skipped)
    os.replace(tmp_scp, scp)
    return scp, skipped_path


def extract(model_dir, epoch, data_dir, out_dir, nj=1, position="far", max_chunk_frames=10000, min_frames=25,
            cmn_window=300, device="cpu", force=False):
    """Extract the embeddings of ``data_dir`` into ``out_dir`` (see module docstring). Returns the list of
    skipped utterance lines."""
    final_scp = os.path.join(out_dir, "xvector.scp")
    if os.path.exists(final_scp) and not force:
        logger.info("%s exists: %s already extracted", final_scp, data_dir)
        return []
    os.makedirs(out_dir, exist_ok=True)
    if force:
        for name in os.listdir(out_dir):
            if name.startswith(("xvector.", "skipped")):
                os.remove(os.path.join(out_dir, name))
    feats_scp = read_table(os.path.join(data_dir, "feats.scp"))
    vad_path = os.path.join(data_dir, "vad.scp")
    if not os.path.exists(vad_path):
        raise FileNotFoundError(f"{vad_path}: missing (run compute_vad.py on {data_dir})")
    vad_scp = read_table(vad_path)
    utts = sorted(feats_scp)
    nj = max(1, min(nj, len(utts)))
    threads = max(1, (os.cpu_count() or 1) // nj)
    jobs = [(j + 1, list(part), feats_scp, vad_scp, model_dir, epoch, out_dir, position, max_chunk_frames,
             min_frames, cmn_window, device, threads) for j, part in enumerate(np.array_split(utts, nj))]
    if nj == 1:
        results = [_job(jobs[0])]
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(nj, mp_context=ctx) as pool:
            results = list(pool.map(_job, jobs))
    vectors, skipped = {}, []
    for scp, skipped_path in results:
        vectors.update(read_table(scp))
        with open(skipped_path) as f:
            skipped.extend(line.rstrip("\n") for line in f if line.strip())
    if skipped:
        logger.warning("%s: %d utterances skipped (listed in %s/skipped), e.g. %s", data_dir, len(skipped),
                       out_dir, skipped[0])
    write_lines(os.path.join(out_dir, "skipped"), skipped)
    utt2spk = {u: s for u, s in read_table(os.path.join(data_dir, "utt2spk")).items() if u in vectors}
    write_table(os.path.join(out_dir, "utt2spk"), utt2spk)
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    write_table(os.path.join(out_dir, "spk2utt"), {s: " ".join(u) for s, u in spk2utt.items()})
    write_table(final_scp, vectors)
    return skipped


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="experiment dir (with config/ and <epoch>.params)")
    p.add_argument("--epoch", type=int, required=True, help="use MODEL_DIR/<epoch>.params")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs")
    p.add_argument("--position", choices=["far", "near"], default="far")
    p.add_argument("--max-chunk-frames", type=int, default=10000)
    p.add_argument("--min-frames", type=int, default=25)
    p.add_argument("--cmn-window", type=int, default=300)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--force", action="store_true", help="redo even if OUTDIR/xvector.scp exists")
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    args = p.parse_args(argv)
    setup_logging()
    extract(args.model_dir, args.epoch, args.data_dir, args.out_dir, args.nj, args.position,
            args.max_chunk_frames, args.min_frames, args.cmn_window, args.device, args.force)


if __name__ == "__main__":
    sys.exit(main())
