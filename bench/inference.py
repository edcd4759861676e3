#!/usr/bin/env python3
"""End-to-end embedding speed of a model package: 10 s utterances through decode -> fbank -> VAD -> CMN ->
network, for the paper's serialized model in PyTorch eager, TorchScript and onnxruntime, 1 thread.

    python3 bench/inference.py [--utts 8] [--seconds 10] [--repeats 5] [--config conf/serialized-tdnn-xvector.yaml]

The package is exported (subtools/pytorch/pipeline/export_model.py, cosine back-end) from an experiment
of ``--config`` with random weights (the speed does not depend on them) and 80-dim fbank (conf/fbank.conf,
as recipe/voxceleb/prepare.sh). The utterances are espeak-ng speech (as the built-in corpus), 16 kHz wav.

Prints, per runtime, CPU seconds per utterance and real time per core (audio seconds / CPU seconds) of
``SpeakerModel.embed(path)``, best and median of ``--repeats`` alternating timings (a shared VM's speed
drifts), and the fraction of the network's FLOP limit reached end to end: the limit is the real-time
factor the network alone would have at the machine's float32 matmul peak, both measured in this run
(forward FLOPs of the utterances' voiced frames by torch.utils.flop_counter / a 1-thread 2048^3 matmul
rate). The frontend alone (decode, fbank, VAD, CMN) is timed beside them.
Targets (issue 13): >= 50x real time per core end to end, >= 0.5 of the FLOP limit.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from bench.train_step import matmul_peak
from recipe.mini.local.espeak import synthesize
from recipe.mini.local.sentences import make_sentence
from subtools.inference import SpeakerModel
from subtools.inference.network import RUNTIMES
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.fileio import write_lines, write_table
from subtools.make_features import conf_lines
from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.training import checkpoint as ckpt
from subtools.pytorch.pipeline.export_model import export
from subtools.score.vectors import VectorSet, save_vectors

RATE = 16000
VOICES = ("en-us+m3", "en+f2", "en-gb-scotland+m1", "en-us-nyc+f4")


def speech(seconds, index, rng):
    """``seconds`` of espeak-ng sentences (one voice per utterance) with a little noise: int16 ``[N]``."""
    sentences = [(make_sentence(rng, 12), 1.0, 1.0) for _ in range(int(seconds) // 2 + 2)]
    wave = np.concatenate(synthesize(VOICES[index % len(VOICES)], 50, 160, sentences, RATE))
    wave = np.pad(wave, (0, max(0, int(seconds * RATE) - len(wave))))[: int(seconds * RATE)]
    wave = wave / np.abs(wave).max() * 0.3 + 0.001 * rng.standard_normal(len(wave))
    return (wave * 32767).astype(np.int16)


def random_weight_package(config_path, root):
    """Export a package of ``config_path``'s network with random weights under ``root``; returns its path."""
    data, exp = os.path.join(root, "data"), os.path.join(root, "exp")
    config = load_config(config_path, [f"data_root={data}", f"exp_dir={exp}"])
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    write_lines(os.path.join(data, config["train_set"], "conf", "feat_type"), ["fbank"])
    write_lines(os.path.join(data, config["train_set"], "conf", "feats.conf"), conf_lines(extractor.options))
    os.makedirs(os.path.join(exp, "config"))
    with open(os.path.join(exp, "config", "config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    ckpt.write_model_config(exp, config["model"], extractor.dim, 5994)
    model = ckpt.build_model(exp)
    ckpt.save_checkpoint(os.path.join(exp, "1.params"), {"epoch": 1, "model": model.state_dict()})
    train = os.path.join(exp, "far_epoch_1", config["backend"]["plda_train_set"])  # the cosine back-end's mean
    dim = model.embedding_dims()["far"]
    vectors = VectorSet([f"s{i % 4}-u{i}" for i in range(16)], np.random.default_rng(0).normal(size=(16, dim)))
    save_vectors(vectors, os.path.join(train, "xvector.scp"))
    write_table(os.path.join(train, "utt2spk"), {k: k.split("-")[0] for k in vectors.keys})
    out = os.path.join(root, "model")
    export(exp, 1, out, backend_name="cosine", log=lambda *_: None)
    return out


def network_flops(model, feats):
    """Forward FLOPs of the network on each voiced-frame matrix ``[T, F]`` (summed)."""
    total = 0
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for x in feats:
            model.network.extract_embedding(torch.from_numpy(x.T.copy())[None], model.position)
        total = counter.get_total_flops()
    return total


def cpu_seconds(function):
    start = time.process_time()
    function()
    return time.process_time() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    p.add_argument("--repeats", type=int, default=5, help="alternating timings of each runtime")
    p.add_argument("--config", default="conf/serialized-tdnn-xvector.yaml", help="experiment config of the network")
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.utts):
            paths.append(os.path.join(tmp, f"u{i}.wav"))
            soundfile.write(paths[-1], speech(args.seconds, i, rng), RATE, subtype="PCM_16")
        package = random_weight_package(args.config, tmp)
        models = {runtime: SpeakerModel.load(package, runtime=runtime, threads=1) for runtime in RUNTIMES}
        eager = models["torch"]
        feats = [eager.voiced_features(path) for path in paths]
        flops = network_flops(eager, feats)
        peak = matmul_peak(torch.device("cpu"))
        audio = args.utts * args.seconds
        limit = audio / (flops / peak)
        runs = {name: (lambda m=m: [m.embed(path) for path in paths]) for name, m in models.items()}
        runs["frontend only"] = lambda: [eager.voiced_features(path) for path in paths]
        for run in runs.values():
            run()                                                    # warm-up
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(cpu_seconds(run))
    voiced = sum(len(x) for x in feats) / (args.utts * args.seconds * 100)
    print(f"# {args.utts} x {args.seconds:g} s espeak-ng utterances (voiced frames {100 * voiced:.0f} %), "
          f"{os.path.basename(args.config)} ({eager.manifest['network']['parameters'] / 1e6:.2f} M parameters "
          f"without the classifier), 1 thread, CPU time, best (median) of {args.repeats}")
    print(f"# network forward: {flops / 1e9 / args.utts:.2f} GFLOP per utterance; matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"-> FLOP limit {limit:.0f}x real time per core")
    print(f"{'runtime':<14} {'ms/utt':>14} {'x real time':>16} {'of FLOP limit':>16}")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        share = "" if name == "frontend only" else f"{audio / best / limit:.2f} ({audio / median / limit:.2f})"
        print(f"{name:<14} {1000 * best / args.utts:6.1f} ({1000 * median / args.utts:5.1f}) "
              f"{audio / best:7.0f} ({audio / median:5.0f}) {share:>16}")
    print("targets: >= 50x real time per core end to end; >= 0.5 of the FLOP limit")


if __name__ == "__main__":
    sys.exit(main())
