"""Shared stage driver of the recipe scripts (ASV-subtools stage numbers).

    python3 recipe/serialized-experiments/runSerialized-tdnn-xvector.py [--config conf/X.yaml]
        [--stage 0] [--endstage 4] [--train-stage -1] [--gpu-id ""|0|0,1,...] [--set key.sub=value ...]

Stages (each skips work already complete and redoes partial work; see the README):

0. sliding CMN + voiced frames: ``<data_root>/<train_set>`` -> ``<data_root>/<train_set>_nosil``
   (``python3 subtools/make_nosil.py``; marker ``.stage0.done`` in the output dir)
1. drop utterances < ``stage1.min_frames`` and speakers < ``stage1.min_utts`` utterances:
   ``..._nosil`` -> ``..._nosil_filtered`` (marker ``.stage1.done``)
2. chunk egs of ``..._nosil_filtered`` into ``egs.dir`` (default ``EXP/egs``; marker ``.done``)
3. train: writes ``EXP/config/{blueprint.py,nnet.config,params.dict}`` when starting from scratch, then
   ``EXP/<epoch>.params``; complete when ``<training.epochs>.params`` exists. ``--train-stage``: -1
   resume from the latest checkpoint, 0 from scratch (an old run's ``N.params`` are deleted), N from
   ``N.params``. ``--gpu-id`` with several ids
   runs ``torchrun --standalone --nproc_per_node=<#ids>`` (DDP, NCCL) with CUDA_VISIBLE_DEVICES=<ids>.
4. embeddings of ``backend.plda_train_set``, ``backend.cohort_set`` and every enroll/test set of
   ``test_sets`` into ``EXP/<extract.position>_epoch_<E>/<set>/`` for each E of ``extract.epochs``.

Every launch writes the merged config (includes and ``--set`` applied, defaults filled) to
``EXP/config/config.yaml``; later stages and the back-end read that copy.
"""
import argparse
import logging
import os
import subprocess
import sys

import yaml

from subtools.kaldi.fileio import atomic_write
from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.support import markers
from subtools.pytorch.libs.support.utils import setup_logging

logger = logging.getLogger("launcher")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def data_path(config, name):
    return os.path.join(config["data_root"], name)


def train_data_dirs(config):
    """``(source, nosil, filtered)`` data dirs of the training set."""
    src = data_path(config, config["train_set"])
    return src, src + "_nosil", src + "_nosil_filtered"


def extract_sets(config):
    """Data-set names stage 4 extracts, in order, without repeats."""
    names = [config["backend"].get("plda_train_set"), config["backend"].get("cohort_set")]
    for test in config["test_sets"]:
        names += [test.get("enroll"), test.get("test")]
    return list(dict.fromkeys(n for n in names if n))


def stage0(config):
    src, dst, _ = train_data_dirs(config)
    opts = {"src": os.path.abspath(src), "cmn_window": config["stage0"]["cmn_window"]}
    marker = os.path.join(dst, ".stage0.done")
    if markers.is_complete(marker, opts):
        logger.info("stage 0: %s is complete, skipped", dst)
        return
    markers.clear(marker)
    cmd = [sys.executable, os.path.join(REPO, "subtools", "make_nosil.py"), "--nj", str(config["stage0"]["nj"]),
           "--cmn-window", str(config["stage0"]["cmn_window"]), src, dst]
    logger.info("stage 0: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    markers.mark_complete(marker, opts)


def stage1(config):
    from subtools.kaldi.data_dir import remove_utt
    _, src, dst = train_data_dirs(config)
    opts = {"src": os.path.abspath(src), **config["stage1"]}
    marker = os.path.join(dst, ".stage1.done")
    if markers.is_complete(marker, opts):
        logger.info("stage 1: %s is complete, skipped", dst)
        return
    markers.clear(marker)
    removed = remove_utt(src, dst, min_frames=config["stage1"]["min_frames"],
                         min_utts=config["stage1"]["min_utts"])
    logger.info("stage 1: %s -> %s, %d utterances removed", src, dst, len(removed))
    markers.mark_complete(marker, opts)


def stage2(config):
    from subtools.pytorch.libs.egs.egs import egs_options, make_chunk_egs
    _, _, src = train_data_dirs(config)
    egs = dict(config["egs"])
    egs_dir = egs.pop("dir")
    egs.pop("specaug", None)
    if markers.is_complete(os.path.join(egs_dir, ".done"), egs_options(src, **egs)):
        logger.info("stage 2: egs %s are complete, skipped", egs_dir)
        return
    logger.info("stage 2: chunk egs of %s -> %s", src, egs_dir)
    make_chunk_egs(src, egs_dir, **egs)


def stage3(config, train_stage, gpu_ids):
    from subtools.pytorch.libs.egs.egs import read_info
    from subtools.pytorch.libs.training.checkpoint import latest_epoch, remove_checkpoints, write_model_config
    exp_dir = config["exp_dir"]
    epochs = config["training"]["epochs"]
    start = latest_epoch(exp_dir) if train_stage < 0 else train_stage
    if train_stage < 0 and start >= epochs:
        logger.info("stage 3: %s has %d.params, training complete, skipped", exp_dir, start)
        return
    if start == 0:
        remove_checkpoints(exp_dir)
    if start == 0 or not os.path.exists(os.path.join(exp_dir, "config", "nnet.config")):
        info = read_info(config["egs"]["dir"])
        write_model_config(exp_dir, config["model"], info["feat_dim"], info["num_targets"])
    args = ["--exp-dir", exp_dir, "--train-stage", str(start), "--device", "cuda" if gpu_ids else "cpu"]
    if len(gpu_ids) > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={len(gpu_ids)}", os.path.join(REPO, "subtools", "pytorch", "pipeline", "train.py"),
               *args]
        logger.info("stage 3: CUDA_VISIBLE_DEVICES=%s %s", ",".join(gpu_ids), " ".join(cmd))
        subprocess.run(cmd, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)})
    else:
        from subtools.pytorch.pipeline.train import train
        logger.info("stage 3: training %s from epoch %d", exp_dir, start)
        train(exp_dir, start, "cuda" if gpu_ids else "cpu")


def stage4(config, gpu_ids):
    from subtools.pytorch.libs.training.checkpoint import checkpoint_path
    from subtools.pytorch.pipeline.extract_embeddings import extract
    opts = config["extract"]
    absent = [e for e in opts["epochs"] if not os.path.isfile(checkpoint_path(config["exp_dir"], e))]
    if absent:
        raise SystemExit(f"stage 4: no checkpoint {config['exp_dir']}/<epoch>.params for extract.epochs {absent}: "
                         f"train those epochs (stage 3) or set extract.epochs (default: [training.epochs])")
    for epoch in opts["epochs"]:
        for name in extract_sets(config):
            out_dir = os.path.join(config["exp_dir"], f"{opts['position']}_epoch_{epoch}", name)
            logger.info("stage 4: %s -> %s", data_path(config, name), out_dir)
            extract(config["exp_dir"], epoch, data_path(config, name), out_dir, nj=opts["nj"],
                    position=opts["position"], max_chunk_frames=opts["max_chunk_frames"],
                    min_frames=opts["min_frames"], cmn_window=config["stage0"]["cmn_window"],
                    device="cuda" if gpu_ids else "cpu")


def parse_args(argv, default_config, description):
    p = argparse.ArgumentParser(description=description or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=default_config, required=default_config is None,
                   help="experiment yaml (default: %(default)s)")
    p.add_argument("--stage", type=int, default=0, help="first stage to run (0-4)")
    p.add_argument("--endstage", type=int, default=4, help="last stage to run (0-4)")
    p.add_argument("--train-stage", type=int, default=-1,
                   help="stage 3: -1 resume from the latest checkpoint, 0 from scratch, N from N.params")
    p.add_argument("--gpu-id", default="",
                   help="'' or -1: CPU; '0': one GPU; '0,1,...': DDP over these GPUs with torchrun")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                   help="override a config value (yaml-parsed), repeatable")
    return p.parse_args(argv)


def main(argv=None, default_config=None, description=None):
    args = parse_args(argv, default_config, description)
    setup_logging()
    config = load_config(args.config, args.overrides)
    gpu_ids = [g for g in args.gpu_id.replace(" ", "").split(",") if g and g != "-1"]
    if gpu_ids and len(gpu_ids) == 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[0]
    with atomic_write(os.path.join(config["exp_dir"], "config", "config.yaml")) as f:
        yaml.safe_dump(config, f, sort_keys=False)
    stages = {0: lambda: stage0(config), 1: lambda: stage1(config), 2: lambda: stage2(config),
              3: lambda: stage3(config, args.train_stage, gpu_ids), 4: lambda: stage4(config, gpu_ids)}
    for stage in range(max(args.stage, 0), min(args.endstage, 4) + 1):
        stages[stage]()
    return 0
