"""Beyond one machine (issue 15): job stages through ``--cmd`` runners (the shipped local runner; a private
single-node SLURM, skipped with the reason where it cannot start), and stage 3 on two "nodes"."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from subtools.compute_vad import run_compute_vad
from subtools.kaldi.fileio import read_table, write_table
from subtools.make_features import make_features
from subtools.parallel import local_slurm
from subtools.parallel.convention import exit_code
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.training import checkpoint as ckpt
from subtools.pytorch.pipeline.extract_embeddings import extract
from test_foundation_pipeline import load_scp, make_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = [sys.executable, os.path.join(REPO, "subtools", "parallel", "run.py")]
FBANK, VAD = os.path.join(REPO, "conf", "fbank.conf"), os.path.join(REPO, "conf", "vad.conf")
MODEL = {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
         "params": {"channels": [16, 16, 16, 16, 32], "embd_dim": 16}}


def assert_same_tables(a, b):
    """Two scp tables name the same keys and identical matrices."""
    a, b = load_scp(a), load_scp(b)
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def twin_data_dirs(root, n_spk=3, n_utt=3):
    """Two copies of one data dir (same audio files)."""
    local = make_data(str(root), n_spk=n_spk, n_utt=n_utt)
    shutil.copytree(local, root / "dispatched")
    return local, str(root / "dispatched")


def test_local_runner_follows_kaldis_convention(tmp_path):
    log = tmp_path / "log" / "t.JOB.log"
    script = "import sys; print('job', sys.argv[1]); sys.exit(int(sys.argv[1] == '3'))"
    done = subprocess.run([*RUNNER, "--mem", "4G", "JOB=2:4", str(log), sys.executable, "-c", script, "JOB"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "1 / 3 jobs failed" in done.stderr
    assert str(tmp_path / "log" / "t.3.log") in done.stderr and "t.2.log" not in done.stderr
    for n in (2, 3, 4):
        text = (tmp_path / "log" / f"t.{n}.log").read_text()
        assert text.startswith("# ") and f"\njob {n}\n" in text
        assert exit_code(str(tmp_path / "log" / f"t.{n}.log")) == (1 if n == 3 else 0)
    assert not (tmp_path / "log" / "t.1.log").exists()
    refused = subprocess.run([*RUNNER, "--queue", "x", "JOB=1:2", str(log), "true"], capture_output=True, text=True)
    assert refused.returncode == 1 and "unknown option --queue" in refused.stderr


def test_stages_through_a_runner_equal_local_processes_and_rerun_only_missing_jobs(tmp_path):
    local, dispatched = twin_data_dirs(tmp_path)
    make_features(local, "fbank", FBANK, nj=2)
    run_compute_vad(local, VAD, nj=2)
    make_features(dispatched, "fbank", FBANK, nj=2, cmd="local")
    run_compute_vad(dispatched, VAD, nj=2, cmd="run.pl --max-jobs-run 2")   # no Kaldi here: the shipped runner
    for table in ("feats.scp", "vad.scp"):
        assert_same_tables(os.path.join(local, table), os.path.join(dispatched, table))
    assert read_table(os.path.join(local, "utt2num_frames")) == read_table(os.path.join(dispatched, "utt2num_frames"))
    logs = {n: os.path.join(dispatched, "log", f"raw_fbank_dispatched.{n}.log") for n in (1, 2)}
    assert all(exit_code(path) == 0 for path in logs.values())

    os.remove(os.path.join(dispatched, "data", "raw_fbank_dispatched.2.done"))   # job 2 did not finish
    before = {n: os.stat(path).st_mtime_ns for n, path in logs.items()}
    make_features(dispatched, "fbank", FBANK, nj=2, cmd="local")
    after = {n: os.stat(path).st_mtime_ns for n, path in logs.items()}
    assert after[1] == before[1] and after[2] != before[2]
    assert_same_tables(os.path.join(local, "feats.scp"), os.path.join(dispatched, "feats.scp"))

    # a job command run again after its dispatch ended is refused before it writes anything
    job_command = open(logs[1]).readline()[2:]
    ark = os.path.join(dispatched, "data", "raw_fbank_dispatched.1.ark")
    identity = os.stat(ark).st_ino
    stale = subprocess.run(job_command, shell=True, capture_output=True, text=True, cwd=REPO)
    assert stale.returncode != 0 and "the dispatch that started it is over" in stale.stderr
    assert os.stat(ark).st_ino == identity


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHER = "import sys; from subtools.pytorch.launcher.stages import main; sys.exit(main())"


def test_two_nodes_train_the_weights_of_one_node_with_two_processes(tmp_path):
    """Launcher --nnodes 2 on localhost, one gloo process per "node": node 0 runs stages 0-4 (stage 0's and
    4's jobs through stage0.cmd / extract.cmd = the local runner), node 1 joins stage 3. The trained weights
    equal a single-node 2-process run (torchrun --standalone) of the same experiment record."""
    data = tmp_path / "data"
    make_feature_dir(str(data / "train"), num_spks=6, utts_per_spk=5, num_frames=(160, 300), dim=12, seed=1)
    make_feature_dir(str(data / "test"), num_spks=3, utts_per_spk=2, num_frames=(60, 200), dim=12, seed=2)
    exp = tmp_path / "exp"
    config = {"exp_dir": str(exp), "data_root": str(data), "train_set": "train", "model": MODEL,
              "stage0": {"nj": 2, "cmd": "local"}, "stage1": {"min_frames": 150, "min_utts": 3},
              "egs": {"chunk_size": 100, "valid_spks": 3}, "optimizer": {"lr": 0.05},
              "training": {"epochs": 1, "batch_size": 8, "num_workers": 0, "progress_bar": False},
              "extract": {"nj": 2, "cmd": "local"}, "backend": {"plda_train_set": "test"},
              "test_sets": [{"name": "t", "enroll": "test", "test": "test", "trials": "unused"}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    node = [sys.executable, "-c", LAUNCHER, "--config", str(tmp_path / "exp.yaml"), "--nnodes", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    with open(logs[0], "w") as log0, open(logs[1], "w") as log1:
        node1 = subprocess.Popen([*node, "--node-rank", "1", "--stage", "3", "--endstage", "3"], cwd=REPO, env=env,
                                 stdout=log1, stderr=subprocess.STDOUT)
        node0 = subprocess.run([*node, "--node-rank", "0"], cwd=REPO, env=env, stdout=log0, stderr=subprocess.STDOUT,
                               timeout=600)   # hang guard only
        codes = node0.returncode, node1.wait(timeout=60)
    assert codes == (0, 0), "\n".join(log.read_text()[-3000:] for log in logs)

    single = tmp_path / "single"
    shutil.copytree(exp / "config", single / "config")
    reference = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                os.path.join(REPO, "subtools", "pytorch", "pipeline", "train.py"), "--exp-dir",
                                str(single), "--train-stage", "0"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    nodes, one = (ckpt.load_checkpoint(str(d / "1.params"))["model"] for d in (exp, single))
    assert nodes.keys() == one.keys()
    for name in one:
        assert torch.equal(nodes[name], one[name]), name
    group = ckpt.load_checkpoint(str(exp / "1.params"))["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(2 * 0.05)          # lr scaled by the 2 processes of 2 nodes

    assert exit_code(str(data / "train_nosil" / "log" / "nosil_feats_train_nosil.2.log")) == 0
    vectors = exp / "far_epoch_1" / "test"
    assert exit_code(str(vectors / "log" / "xvector.2.log")) == 0
    extract(str(exp), 1, str(data / "test"), str(tmp_path / "local_vectors"), nj=2)
    assert_same_tables(str(tmp_path / "local_vectors" / "xvector.scp"), str(vectors / "xvector.scp"))


@pytest.fixture(scope="module")
def slurm():
    """A private single-node SLURM (subtools.parallel.local_slurm: installed with apt-get when missing, started
    as root) with SLURM_CONF pointing at it; the tests skip with the reason when it cannot start."""
    with contextlib.ExitStack() as stack:
        try:
            conf = stack.enter_context(local_slurm.running())
        except local_slurm.SlurmUnavailable as e:
            pytest.skip(f"SLURM cannot start on this machine: {e}")
        stack.enter_context(pytest.MonkeyPatch.context()).setenv("SLURM_CONF", conf)
        yield conf


def random_model(exp_dir, feat_dim):
    """An experiment with an untrained x-vector (seeded) as epoch 1."""
    ckpt.write_model_config(str(exp_dir), MODEL, feat_dim, 4)
    torch.manual_seed(0)
    ckpt.save_checkpoint(str(exp_dir / "1.params"), {"epoch": 1, "model": ckpt.build_model(str(exp_dir)).state_dict()})


def test_slurm_runs_features_and_extraction_as_local_runs_and_names_a_failed_job(slurm, tmp_path):
    local, dispatched = twin_data_dirs(tmp_path, n_spk=2)
    make_features(local, "fbank", FBANK, nj=2, vad_conf=VAD)
    make_features(dispatched, "fbank", FBANK, nj=2, vad_conf=VAD, cmd="slurm --mem 500M")
    for table in ("feats.scp", "vad.scp"):
        assert_same_tables(os.path.join(local, table), os.path.join(dispatched, table))
    assert exit_code(os.path.join(dispatched, "log", "raw_fbank_dispatched.2.log")) == 0

    exp = tmp_path / "exp"
    random_model(exp, 80)
    extract(str(exp), 1, local, str(tmp_path / "local_vectors"), nj=2)
    bad = tmp_path / "bad"                  # job 2's last utterance names a missing feature ark
    shutil.copytree(dispatched, bad)
    feats = read_table(bad / "feats.scp")
    last = sorted(feats)[-1]
    write_table(str(bad / "feats.scp"), {**feats, last: f"{tmp_path}/missing.ark:12"})
    out = tmp_path / "vectors"
    with pytest.raises(RuntimeError, match=r"1 of the 2 jobs run through --cmd 'slurm' failed.*xvector\.2\.log"):
        extract(str(exp), 1, str(bad), str(out), nj=2, cmd="slurm")
    log = out / "log" / "xvector.2.log"
    assert "missing.ark" in log.read_text() and exit_code(str(log)) == 1
    assert exit_code(str(out / "log" / "xvector.1.log")) == 0 and not (out / "xvector.scp").exists()

    write_table(str(bad / "feats.scp"), feats)          # repaired: the rerun redoes job 2 only
    job1 = os.stat(out / "log" / "xvector.1.log").st_mtime_ns
    extract(str(exp), 1, str(bad), str(out), nj=2, cmd="slurm")
    assert os.stat(out / "log" / "xvector.1.log").st_mtime_ns == job1 and exit_code(str(log)) == 0
    assert_same_tables(str(tmp_path / "local_vectors" / "xvector.scp"), str(out / "xvector.scp"))
