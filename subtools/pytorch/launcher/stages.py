"""Shared stage driver of the recipe scripts (ASV-subtools stage numbers).

    python3 recipe/serialized-experiments/runSerialized-tdnn-xvector.py [--config conf/X.yaml]
        [--stage 0] [--endstage 4] [--train-stage -1] [--force] [--gpu-id ""|0|0,1,...] [--wait]
        [--trust-blueprint] [--init-from CHECKPOINT] [--set key.sub=value ...]
        [--nnodes N --node-rank R --master-addr HOST [--master-port 29500]]

Stages (each skips work already complete and redoes partial or outdated work; see the README):

0. sliding CMN + voiced frames: ``<data_root>/<train_set>`` -> ``<data_root>/<train_set>_nosil``
   (``python3 subtools/make_nosil.py``, its jobs through ``stage0.cmd`` when set, e.g. ``slurm --mem 4G``;
   marker ``.stage0.done`` in the output dir)
1. drop utterances < ``stage1.min_frames`` and speakers < ``stage1.min_utts`` utterances:
   ``..._nosil`` -> ``..._nosil_filtered`` (marker ``.stage1.done``)
2. chunk egs of ``..._nosil_filtered`` into ``egs.dir`` (default ``EXP/egs``; marker ``.done``)
3. train: writes ``EXP/config/{config.yaml,blueprint.py,nnet.config,params.dict,egs.done}`` when starting
   from scratch, then ``EXP/<epoch>.params``; complete when ``<training.epochs>.params`` exists.
   ``--train-stage``: -1 resume from the latest checkpoint, 0 from scratch (``--force`` is the same), N from
   ``N.params``. ``--gpu-id`` with several ids runs ``torchrun --standalone --nproc_per_node=<#ids>``
   (DDP, NCCL) with CUDA_VISIBLE_DEVICES=<ids>. ``--init-from CHECKPOINT`` (= ``--set
   training.init_from=CHECKPOINT``) starts from another experiment's weights (fine-tuning, see train.py).
   **Several nodes**: the same launcher command on every node, with ``--nnodes N --node-rank R --master-addr
   <node 0's host>``, runs torchrun with a static rendezvous at node 0 (``--nproc_per_node`` = the number of
   ``--gpu-id`` ids; 1 on CPU, gloo). Node 0 does everything the launcher does; a node R > 0 only joins
   stage 3's training (``pipeline/train_nodes.py``, which takes the start epoch from node 0), without the
   experiment's lock, and needs ``--stage 3 --endstage 3``.
4. embeddings of ``backend.plda_train_set``, ``backend.cohort_set`` and every enroll/test set of
   ``test_sets`` into ``EXP/<extract.position>_epoch_<E>/<set>/`` for each E of ``extract.epochs``
   (a number, or ``avg``: ``EXP/avg.params`` written by ``pipeline/average_checkpoints.py``); the jobs go
   through ``extract.cmd`` when set (e.g. ``slurm --gres gpu:1``).

**What was made from old inputs is never reused.** A stage's marker records its options and the
fingerprint of the data dir it read (table contents, and the identities of the arks its scp tables
name), so edited features, VAD or tables redo it; extraction is stamped with the checkpoint's content.
``EXP/config/config.yaml`` always describes the weights beside it: when ``EXP`` holds checkpoints trained
with other model / optimizer / lr / training / data options than the new config, the launcher stops and
lists the differing keys (retrain with ``--train-stage 0`` or ``--force``, or use another ``exp_dir``);
otherwise it writes the new config there (changed back-end, test sets or extraction options apply at once).
A resumed training whose egs changed since it started, or that runs on another number of processes, stops likewise.

**Destructive steps come last.** Retraining over a trained experiment checks the device, the egs and the
model first, writes the new run's record to ``EXP/config.new/``, and moves the old run (its config,
checkpoints, embeddings, results, exported model package) to ``EXP/previous_run/`` only when the new run saves
its first checkpoint; resuming the old run instead drops an abandoned ``EXP/config.new/``.

The launcher holds the lock of ``EXP`` (a second launcher on it stops at once, or waits with ``--wait``);
stages 0-2 and 4 also lock the data, egs and embedding dirs they write, which experiments may share.
"""
import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys

import yaml

from subtools import REPO_ROOT, resolve_path
from subtools.cli import run_cli
from subtools.kaldi import fingerprint
from subtools.kaldi.fileio import atomic_write
from subtools.kaldi.lock import WAIT_HELP, locked
from subtools.pytorch.launcher.config import config_diff, load_config
from subtools.pytorch.libs.support import markers
from subtools.pytorch.libs.support.utils import setup_logging
from subtools.pytorch.libs.training import checkpoint as ckpt

logger = logging.getLogger("launcher")
PIPELINE = os.path.join(REPO_ROOT, "subtools", "pytorch", "pipeline")


@dataclasses.dataclass(frozen=True)
class Nodes:
    """The machines of stage 3's training: ``count`` nodes, this one ``rank``, node 0 at ``addr:port``."""

    count: int = 1
    rank: int = 0
    addr: str = "127.0.0.1"
    port: int = 29500


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


def require(path, what, fix):
    """FileNotFoundError "``what``: ``path`` is missing: ``fix``" unless ``path`` exists."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: {path} is missing: {fix}")


def stage0(config, wait):
    src, dst, _ = train_data_dirs(config)
    for name in ("feats.scp", "vad.scp"):
        require(os.path.join(src, name), "stage 0", "make the training set's features and VAD first "
                                                    "(recipe/voxceleb/prepare.sh stage 2)")
    opts = {"src": os.path.abspath(src), "cmn_window": config["stage0"]["cmn_window"],
            "inputs": fingerprint.data_dir_fingerprint(src)}
    marker = os.path.join(dst, ".stage0.done")
    if markers.is_complete(marker, opts):
        logger.info("stage 0: %s is complete, skipped", dst)
        return
    markers.clear(marker)
    job_cmd = config["stage0"]["cmd"]
    cmd = [sys.executable, os.path.join(REPO_ROOT, "subtools", "make_nosil.py"), "--nj", str(config["stage0"]["nj"]),
           "--cmn-window", str(config["stage0"]["cmn_window"]), *(["--wait"] if wait else []),
           *(["--cmd", job_cmd] if job_cmd else []), src, dst]
    logger.info("stage 0: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    markers.mark_complete(marker, opts)


def stage1(config, wait):
    from subtools.kaldi.data_dir import remove_utt
    _, src, dst = train_data_dirs(config)
    require(os.path.join(src, ".stage0.done"), "stage 1", "run stage 0 first")
    opts = {"src": os.path.abspath(src), **config["stage1"], "inputs": fingerprint.data_dir_fingerprint(src, follow=())}
    marker = os.path.join(dst, ".stage1.done")
    with locked(dst, wait, f"data dir {dst}"):
        if markers.is_complete(marker, opts):
            logger.info("stage 1: %s is complete, skipped", dst)
            return
        markers.clear(marker)
        removed = remove_utt(src, dst, min_frames=config["stage1"]["min_frames"],
                             min_utts=config["stage1"]["min_utts"])
        logger.info("stage 1: %s -> %s, %d utterances removed", src, dst, len(removed))
        markers.mark_complete(marker, opts)


def stage2(config, wait):
    from subtools.pytorch.libs.egs.egs import egs_options, make_chunk_egs
    _, _, src = train_data_dirs(config)
    require(os.path.join(src, ".stage1.done"), "stage 2", "run stage 1 first")
    egs = dict(config["egs"])
    egs_dir = egs.pop("dir")
    egs.pop("specaug", None)
    with locked(egs_dir, wait, f"egs dir {egs_dir}"):
        if markers.is_complete(os.path.join(egs_dir, ".done"), egs_options(src, **egs)):
            logger.info("stage 2: egs %s are complete, skipped", egs_dir)
            return
        logger.info("stage 2: chunk egs of %s -> %s", src, egs_dir)
        make_chunk_egs(src, egs_dir, **egs)


def check_device(gpu_ids):
    """RuntimeError unless every GPU of ``gpu_ids`` can be used (checked before anything is changed)."""
    if not gpu_ids:
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"--gpu-id {','.join(gpu_ids)}: CUDA is not available on this machine "
                           "(torch.cuda.is_available() is False); train on the CPU with --gpu-id ''")
    visible = torch.cuda.device_count()
    bad = [g for g in gpu_ids if len(gpu_ids) > 1 and not (g.isdigit() and int(g) < visible)]
    if bad:
        raise RuntimeError(f"--gpu-id {','.join(gpu_ids)}: GPU(s) {', '.join(bad)} not among the {visible} visible")


def egs_record(config):
    """The egs marker (options + input fingerprint) the training reads."""
    with open(os.path.join(config["egs"]["dir"], ".done")) as f:
        return f.read()


def trusts(config, config_dir, trust_blueprint):
    """Whether the model of ``config_dir`` may be built from its blueprint copy: the user said so, or the copy
    is identical to the blueprint the user's config names (see checkpoint.trusted_blueprint)."""
    return trust_blueprint or ckpt.copy_of(config_dir, resolve_path(config["model"]["blueprint"]))


def stage3(config, train_stage, gpu_ids, trust_blueprint, nodes=Nodes()):
    from subtools.pytorch.libs.egs.egs import read_info
    exp_dir = config["exp_dir"]
    epochs = config["training"]["epochs"]
    egs_done = os.path.join(config["egs"]["dir"], ".done")
    require(egs_done, "stage 3", "run stage 2 first")
    start = ckpt.latest_epoch(exp_dir) if train_stage < 0 else train_stage
    if train_stage < 0 and start >= epochs:
        logger.info("stage 3: %s has %d.params, training complete, skipped", exp_dir, start)
        return
    processes = nodes.count * max(1, len(gpu_ids))
    if start > 0:
        ckpt.require_checkpoint(exp_dir, start)
        recorded = os.path.join(exp_dir, "config", "egs.done")
        if os.path.isfile(recorded) and open(recorded).read() != egs_record(config):
            raise ValueError(f"stage 3: the egs in {config['egs']['dir']} changed since {exp_dir} started training "
                             f"(compare {egs_done} with {recorded}); retrain with --train-stage 0, or use a new exp_dir")
        recorded = os.path.join(exp_dir, "config", "processes")
        trained_with = int(open(recorded).read()) if os.path.isfile(recorded) else processes
        if trained_with != processes:
            raise ValueError(f"stage 3: {exp_dir} was trained with {trained_with} processes, this "
                             f"run has {processes}: the lr scaling and the data order would change mid-training; "
                             "resume with as many GPUs (--gpu-id, --nnodes), or retrain with --train-stage 0")
    check_device(gpu_ids)
    pending = start == 0 and bool(ckpt.saved_epochs(exp_dir))   # an old run to keep until the new one saves
    if not pending:   # a retraining abandoned before its first checkpoint
        shutil.rmtree(os.path.join(exp_dir, ckpt.PENDING_CONFIG), ignore_errors=True)
    config_dir = os.path.join(exp_dir, ckpt.PENDING_CONFIG if pending else "config")
    if start == 0:
        info = read_info(config["egs"]["dir"])
        ckpt.write_model_config(exp_dir, config["model"], info["feat_dim"], info["num_targets"], config_dir)
    trust_blueprint = trusts(config, config_dir, trust_blueprint)
    if start == 0:
        ckpt.build_model(exp_dir, trust_blueprint, config_dir)     # the params build before anything moves
        write_config(config, config_dir)
        with atomic_write(os.path.join(config_dir, "egs.done")) as f:
            f.write(egs_record(config))
        with atomic_write(os.path.join(config_dir, "processes")) as f:
            f.write(f"{processes}\n")
        if pending:
            ckpt.keep_training_log(exp_dir)
    args = ["--exp-dir", exp_dir, "--train-stage", str(start), "--device", "cuda" if gpu_ids else "cpu",
            *(["--pending"] if pending else []), *(["--trust-blueprint"] if trust_blueprint else [])]
    if len(gpu_ids) > 1 or nodes.count > 1:
        run_torchrun(args, gpu_ids, nodes)
    else:
        from subtools.pytorch.pipeline.train import train
        logger.info("stage 3: training %s from epoch %d", exp_dir, start)
        train(exp_dir, start, "cuda" if gpu_ids else "cpu", pending=pending, trust_blueprint=trust_blueprint)


def torchrun_command(train_args, nproc, nodes):
    """argv of torch's launcher for the training: one node, ``--standalone`` with ``train.py``; several, a
    static rendezvous at node 0 with ``train_nodes.py`` (see the module docstring)."""
    if nodes.count == 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                os.path.join(PIPELINE, "train.py"), *train_args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes.count}", f"--node-rank={nodes.rank}",
            f"--master-addr={nodes.addr}", f"--master-port={nodes.port}", f"--nproc_per_node={nproc}",
            os.path.join(PIPELINE, "train_nodes.py"), *train_args]


def run_torchrun(train_args, gpu_ids, nodes):
    cmd = torchrun_command(train_args, max(1, len(gpu_ids)), nodes)
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)} if gpu_ids else {})}
    logger.info("stage 3: CUDA_VISIBLE_DEVICES=%s %s", ",".join(gpu_ids), " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


def join_training(config, train_stage, gpu_ids, trust_blueprint, nodes):
    """Node ``nodes.rank`` > 0 of a multi-node stage 3: run this node's training processes (see the module
    docstring); nothing when the training is complete (node 0 skips it too)."""
    epochs = config["training"]["epochs"]
    if train_stage < 0 and ckpt.latest_epoch(config["exp_dir"]) >= epochs:
        logger.info("stage 3: %s has %d.params, training complete, skipped", config["exp_dir"], epochs)
        return
    check_device(gpu_ids)
    pending = os.path.join(config["exp_dir"], ckpt.PENDING_CONFIG)
    trust_blueprint = trusts(config, pending if os.path.isdir(pending) else os.path.join(config["exp_dir"], "config"),
                             trust_blueprint)
    logger.info("stage 3: node %d of %d joins the training at %s:%d", nodes.rank, nodes.count, nodes.addr, nodes.port)
    run_torchrun(["--exp-dir", config["exp_dir"], "--train-stage", str(train_stage), "--device",
                  "cuda" if gpu_ids else "cpu", *(["--trust-blueprint"] if trust_blueprint else [])], gpu_ids, nodes)


def stage4(config, gpu_ids, wait, trust_blueprint):
    from subtools.pytorch.pipeline.extract_embeddings import extract
    opts = config["extract"]
    absent = [e for e in opts["epochs"] if not os.path.isfile(ckpt.checkpoint_path(config["exp_dir"], e))]
    if absent:
        raise FileNotFoundError(f"stage 4: no checkpoint {config['exp_dir']}/<epoch>.params for extract.epochs "
                                f"{absent}: train those epochs (stage 3), average them (avg: "
                                "average_checkpoints.py) or set extract.epochs (default: [training.epochs])")
    if not opts["cmd"]:   # jobs through extract.cmd run on other machines, which this one cannot check
        check_device(gpu_ids)
    trust_blueprint = trusts(config, os.path.join(config["exp_dir"], "config"), trust_blueprint)
    for epoch in opts["epochs"]:
        for name in extract_sets(config):
            out_dir = os.path.join(config["exp_dir"], f"{opts['position']}_epoch_{epoch}", name)
            logger.info("stage 4: %s -> %s", data_path(config, name), out_dir)
            extract(config["exp_dir"], epoch, data_path(config, name), out_dir, nj=opts["nj"],
                    position=opts["position"], max_chunk_frames=opts["max_chunk_frames"],
                    min_frames=opts["min_frames"], cmn_window=config["stage0"]["cmn_window"],
                    device="cuda" if gpu_ids else "cpu", wait=wait, trust_blueprint=trust_blueprint,
                    cmd=opts["cmd"] or "")


def write_config(config, config_dir):
    with atomic_write(os.path.join(config_dir, "config.yaml")) as f:
        yaml.safe_dump(config, f, sort_keys=False)


def check_model_params(config):
    """Build the configured model once with placeholder sizes, so that a bad ``model.params`` stops the
    launcher before any stage runs (the blueprint is the project file the config names)."""
    from subtools.pytorch.libs.nnet.framework import load_blueprint
    model = config["model"]
    cls = load_blueprint(resolve_path(model["blueprint"]), model["class"])
    try:
        cls(80, 10, **(model.get("params") or {}))
    except TypeError as e:
        raise ValueError(f"model.params: {model['class']}: {e}") from None


def record_config(config, stage_range, fresh):
    """Check the new config against the one the experiment's checkpoints were trained with, and write it
    as ``EXP/config/config.yaml`` unless a retraining will (see the module docstring)."""
    exp_dir = config["exp_dir"]
    path = os.path.join(exp_dir, "config", "config.yaml")
    trained = ckpt.saved_epochs(exp_dir)
    old = None
    if trained and os.path.isfile(path):
        with open(path) as f:
            old = yaml.safe_load(f)
    diff = config_diff(old, config) if old else []
    if diff and not fresh:
        raise ValueError(f"{exp_dir} holds checkpoints trained with another config ({path}); differing keys:\n  "
                         + "\n  ".join(diff) + "\nretrain with --train-stage 0 (or --force), or set exp_dir to a "
                                               "new directory")
    if fresh and trained and 3 not in stage_range:
        raise ValueError("retraining (--train-stage 0 / --force) needs stage 3 in --stage..--endstage")
    if not (fresh and trained):
        write_config(config, os.path.join(exp_dir, "config"))


def parse_args(argv, default_config, description):
    p = argparse.ArgumentParser(description=description or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=default_config, required=default_config is None,
                   help="experiment yaml (default: %(default)s)")
    p.add_argument("--stage", type=int, default=0, help="first stage to run (0-4)")
    p.add_argument("--endstage", type=int, default=4, help="last stage to run (0-4)")
    p.add_argument("--train-stage", type=int, default=-1,
                   help="stage 3: -1 resume from the latest checkpoint, 0 from scratch, N from N.params")
    p.add_argument("--force", action="store_true",
                   help="retrain from scratch (same as --train-stage 0), e.g. after changing the model config")
    p.add_argument("--gpu-id", default="",
                   help="'' or -1: CPU; '0': one GPU; '0,1,...': DDP over these GPUs with torchrun")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.add_argument("--trust-blueprint", action="store_true", help=ckpt.TRUST_HELP)
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start training from the weights of CHECKPOINT (another experiment's N.params or "
                        "avg.params): the same as --set training.init_from=CHECKPOINT")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                   help="override a config value (yaml-parsed), repeatable")
    p.add_argument("--nnodes", type=int, default=1, help="stage 3: machines the training runs on (default 1)")
    p.add_argument("--node-rank", type=int, default=0,
                   help="stage 3 with --nnodes: this machine's rank, 0..nnodes-1 (0 runs every stage)")
    p.add_argument("--master-addr", default="127.0.0.1", help="stage 3 with --nnodes: host name or address of node 0")
    p.add_argument("--master-port", type=int, default=29500, help="stage 3 with --nnodes: a free port on node 0")
    args = p.parse_args(argv)
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        p.error(f"--node-rank must be in 0..{args.nnodes - 1} and --nnodes >= 1 (got {args.node_rank}, {args.nnodes})")
    return args


def run(args):
    overrides = args.overrides + ([f"training.init_from={json.dumps(args.init_from)}"] if args.init_from else [])
    config = load_config(args.config, overrides)
    check_model_params(config)
    gpu_ids = [g for g in args.gpu_id.replace(" ", "").split(",") if g and g != "-1"]
    if len(gpu_ids) == 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[0]
    train_stage = 0 if args.force else args.train_stage
    stage_range = range(max(args.stage, 0), min(args.endstage, 4) + 1)
    nodes = Nodes(args.nnodes, args.node_rank, args.master_addr, args.master_port)
    if nodes.rank > 0:
        if list(stage_range) != [3]:
            raise ValueError(f"--node-rank {nodes.rank}: a node other than 0 only joins stage 3's training; run it "
                             "with --stage 3 --endstage 3 (node 0 runs the other stages)")
        join_training(config, train_stage, gpu_ids, args.trust_blueprint, nodes)
        return 0
    with locked(config["exp_dir"], args.wait, f"experiment {config['exp_dir']}"):
        record_config(config, stage_range, fresh=train_stage == 0)
        stages = {0: lambda: stage0(config, args.wait), 1: lambda: stage1(config, args.wait),
                  2: lambda: stage2(config, args.wait),
                  3: lambda: stage3(config, train_stage, gpu_ids, args.trust_blueprint, nodes),
                  4: lambda: stage4(config, gpu_ids, args.wait, args.trust_blueprint)}
        for stage in stage_range:
            stages[stage]()
    return 0


def main(argv=None, default_config=None, description=None):
    args = parse_args(argv, default_config, description)
    setup_logging()
    return run_cli(run, args)
