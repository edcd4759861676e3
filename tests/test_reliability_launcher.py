"""Reliability of the launcher and extraction (issue: a rerun after an edit never reuses stale output):
retrained models re-extracted, changed configs refused, unknown keys, destructive steps last, trusted
blueprints only, missing/truncated checkpoints, two launchers on one experiment, paths with spaces."""
import os
import shutil
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.fileio import read_table
from subtools.pytorch.launcher.stages import main
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.training.checkpoint import load_model
from test_reliability_jobs import hold_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRACT = [sys.executable, f"{REPO}/subtools/pytorch/pipeline/extract_embeddings.py"]


def write_config(path, root, **changes):
    config = {
        "exp_dir": str(root / "exp"), "data_root": str(root / "data"), "train_set": "train",
        "stage0": {"nj": 1}, "stage1": {"min_frames": 150, "min_utts": 3},
        "egs": {"chunk_size": 100, "valid_spks": 3},
        "model": {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
                  "params": {"channels": [16, 16, 16, 16, 32], "embd_dim": 16}},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 2, "batch_size": 16, "num_workers": 0, "progress_bar": False},
        "extract": {"nj": 1},
        "backend": {"plda_train_set": "train", "cohort_set": "train"},
        "test_sets": [{"name": "t", "enroll": "test", "test": "test", "trials": "unused"}],
    }
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained and extracted experiment (synthetic features); tests work on copies of it."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("reliability")
    make_feature_dir(str(root / "data" / "train"), num_spks=6, utts_per_spk=5, num_frames=(160, 300), dim=12, seed=1)
    make_feature_dir(str(root / "data" / "test"), num_spks=3, utts_per_spk=2, num_frames=(60, 200), dim=12, seed=2)
    assert main(["--config", str(write_config(root / "exp.yaml", root))]) == 0
    return root


def copy_experiment(trained, tmp_path, name="exp"):
    """A copy of the trained experiment and a config pointing at it (the data dirs are shared)."""
    shutil.copytree(trained / "exp", tmp_path / name)
    return write_config(tmp_path / f"{name}.yaml", trained, exp_dir=str(tmp_path / name))


def embeddings(directory):
    return {u: kaldiio.load_mat(v) for u, v in read_table(os.path.join(directory, "xvector.scp")).items()}


def direct_embeddings(model, data):
    """Embeddings written from the model's own forward: sliding CMN and voiced frames written out here
    (independent of the extraction jobs)."""
    feats, vads = read_table(data / "feats.scp"), read_table(data / "vad.scp")
    out = {}
    for utt, entry in feats.items():
        x = sliding_cmn(kaldiio.load_mat(entry), 300)[kaldiio.load_mat(vads[utt]) > 0.5]
        with torch.no_grad():
            out[utt] = model.extract_embedding(torch.from_numpy(x.T.copy())[None], "far")[0].numpy()
    return out


def files_of(directory):
    return {p: open(os.path.join(directory, p), "rb").read() for p in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, p))}


def test_retraining_re_extracts_and_keeps_the_old_run_aside(trained, tmp_path):
    config = copy_experiment(trained, tmp_path)
    exp = tmp_path / "exp"
    old_params = (exp / "2.params").read_bytes()
    old_vectors = embeddings(exp / "far_epoch_2" / "test")
    assert main(["--config", str(config), "--train-stage", "0", "--set", "training.seed=7"]) == 0
    new_vectors = embeddings(exp / "far_epoch_2" / "test")
    expected = direct_embeddings(load_model(str(exp), 2), trained / "data" / "test")
    assert new_vectors.keys() == expected.keys() == old_vectors.keys()
    for utt in expected:
        np.testing.assert_allclose(new_vectors[utt], expected[utt], rtol=1e-4, atol=1e-5)
        assert not np.allclose(new_vectors[utt], old_vectors[utt], atol=1e-3)   # not the old model's
    previous = exp / "previous_run"
    assert (previous / "2.params").read_bytes() == old_params
    assert embeddings(previous / "far_epoch_2" / "test").keys() == old_vectors.keys()
    assert yaml.safe_load((exp / "config" / "config.yaml").read_text())["training"]["seed"] == 7
    assert yaml.safe_load((previous / "config" / "config.yaml").read_text())["training"]["seed"] == 1024
    assert not (exp / "config.new").exists()


def test_extraction_cli_re_extracts_after_a_new_checkpoint(trained, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(trained / "exp", exp)
    out = tmp_path / "vectors"
    cmd = [*EXTRACT, "--model-dir", str(exp), "--epoch", "2", str(trained / "data" / "test"), str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    first = embeddings(out)
    state = torch.load(exp / "2.params", weights_only=True)
    for value in state["model"].values():
        if value.is_floating_point():
            value.mul_(1.5)
    torch.save(state, exp / "2.params")                 # a different model at the same path
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    second = embeddings(out)
    expected = direct_embeddings(load_model(str(exp), 2), trained / "data" / "test")
    for utt in expected:
        np.testing.assert_allclose(second[utt], expected[utt], rtol=1e-4, atol=1e-5)
        assert not np.allclose(second[utt], first[utt], atol=1e-3)


def test_a_changed_model_config_stops_and_lists_the_keys(trained, tmp_path):
    config = copy_experiment(trained, tmp_path)
    record = tmp_path / "exp" / "config" / "config.yaml"
    before = record.read_bytes()
    with pytest.raises(SystemExit, match=r"model\.params\.embd_dim: 16 -> 24(.|\n)*--train-stage 0"):
        main(["--config", str(config), "--set", "model.params.embd_dim=24", "--set", "optimizer.lr=0.1"])
    assert record.read_bytes() == before
    with pytest.raises(SystemExit, match=r"optimizer\.lr: 0\.05 -> 0\.1"):
        main(["--config", str(config), "--stage", "4", "--set", "optimizer.lr=0.1"])
    # options that do not change the weights are taken at once
    assert main(["--config", str(config), "--stage", "4", "--set", "backend.lda_dim=8",
                 "--set", "training.num_workers=1"]) == 0
    assert yaml.safe_load(record.read_text())["backend"]["lda_dim"] == 8
    # --force retrains and then the record holds the new value
    assert main(["--config", str(config), "--stage", "3", "--endstage", "3", "--force",
                 "--set", "model.params.embd_dim=24"]) == 0
    assert yaml.safe_load(record.read_text())["model"]["params"]["embd_dim"] == 24
    assert load_model(str(tmp_path / "exp"), 2).extract_embedding(torch.zeros(1, 12, 80)).shape == (1, 24)


@pytest.mark.parametrize("override, message", [
    ("trainng.epochs=1", r"unknown key 'trainng' \(did you mean 'training'\?\) \(from --set trainng.epochs=1\)"),
    ("training.epchs=1", r"unknown key 'training.epchs' \(did you mean 'training.epochs'\?\)"),
    ("training.epochs.x=5", r"--set training.epochs.x=5: 'training.epochs' is 2, not a mapping"),
    ("test_sets.3.trials=x", r"'test_sets' has 1 entries: index 3 is out of range"),
    ("lr_scheduler.step.stepsize=2", r"lr_scheduler.step: unknown option\(s\) \['stepsize'\]"),
    ("model.params.emb_dim=8", r"model.params: Xvector: .*unexpected keyword argument 'emb_dim'"),
])
def test_unknown_keys_are_errors(trained, tmp_path, override, message):
    config = write_config(tmp_path / "exp.yaml", trained, exp_dir=str(tmp_path / "never"))
    with pytest.raises(SystemExit, match=message):
        main(["--config", str(config), "--set", override])
    assert not (tmp_path / "never").exists()


def test_a_typo_in_the_yaml_is_an_error(trained, tmp_path):
    config = write_config(tmp_path / "exp.yaml", trained, exp_dir=str(tmp_path / "never"),
                          backend={"plda_train_set": "train", "lda_dimm": 8})
    with pytest.raises(SystemExit, match=r"unknown key 'backend.lda_dimm' \(did you mean 'backend.lda_dim'\?\)"):
        main(["--config", str(config)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_retraining_on_a_missing_gpu_keeps_the_trained_model(trained, tmp_path):
    config = copy_experiment(trained, tmp_path)
    exp = tmp_path / "exp"
    before = {**files_of(exp), **{f"config/{k}": v for k, v in files_of(exp / "config").items()},
              **{f"test/{k}": v for k, v in files_of(exp / "far_epoch_2" / "test").items()}}
    with pytest.raises(SystemExit, match="CUDA is not available"):
        main(["--config", str(config), "--train-stage", "0", "--gpu-id", "0"])
    after = {**files_of(exp), **{f"config/{k}": v for k, v in files_of(exp / "config").items()},
             **{f"test/{k}": v for k, v in files_of(exp / "far_epoch_2" / "test").items()}}
    after.pop(".lock", None), before.pop(".lock", None)
    assert after == before and not (exp / "config.new").exists() and not (exp / "previous_run").exists()


def test_an_edited_blueprint_runs_only_when_trusted(trained, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(trained / "exp", exp)
    ran = tmp_path / "blueprint_ran"
    with open(exp / "config" / "blueprint.py", "a") as f:
        f.write(f"\nopen({str(ran)!r}, 'w').close()\n")
    cmd = [*EXTRACT, "--model-dir", str(exp), "--epoch", "2", str(trained / "data" / "test"), str(tmp_path / "out")]
    refused = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "blueprint.py differs from the project's subtools/pytorch/model/xvector.py" in refused.stderr
    assert "--trust-blueprint" in refused.stderr and not ran.exists() and not (tmp_path / "out").exists()
    subprocess.run([*cmd[:2], "--trust-blueprint", *cmd[2:]], check=True, cwd=REPO, capture_output=True)
    assert ran.exists() and len(embeddings(tmp_path / "out")) == 6


def test_missing_or_truncated_checkpoint_is_named(trained, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(trained / "exp", exp)
    out = tmp_path / "out"
    missing = subprocess.run([*EXTRACT, "--model-dir", str(exp), "--epoch", "9", str(trained / "data" / "test"),
                              str(out)], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert f"checkpoint {exp}/9.params does not exist ({exp} has epochs 1 2;" in missing.stderr
    assert not out.exists()
    data = (exp / "2.params").read_bytes()
    (exp / "2.params").write_bytes(data[: len(data) // 2])
    truncated = subprocess.run([*EXTRACT, "--model-dir", str(exp), "--epoch", "2", str(trained / "data" / "test"),
                                str(out)], cwd=REPO, capture_output=True, text=True)
    assert truncated.returncode != 0 and f"checkpoint {exp}/2.params is unreadable (truncated" in truncated.stderr
    assert not (out / "xvector.scp").exists()


def test_a_second_launcher_on_the_experiment_stops(trained, tmp_path):
    config = copy_experiment(trained, tmp_path)
    holder = hold_lock(str(tmp_path / "exp"))
    try:
        with pytest.raises(SystemExit, match=rf"experiment {tmp_path / 'exp'} is in use by pid {holder.pid}"):
            main(["--config", str(config)])
    finally:
        holder.kill()


def test_a_stage_without_its_input_says_which_stage_to_run(trained, tmp_path):
    shutil.copytree(trained / "data" / "train", tmp_path / "data" / "train")
    config = write_config(tmp_path / "exp.yaml", tmp_path, exp_dir=str(tmp_path / "exp"),
                          data_root=str(tmp_path / "data"))
    with pytest.raises(SystemExit, match=r"stage 1: .*train_nosil/\.stage0\.done is missing: run stage 0 first"):
        main(["--config", str(config), "--stage", "1"])
    with pytest.raises(SystemExit, match=r"stage 3: .*egs/\.done is missing: run stage 2 first"):
        main(["--config", str(config), "--stage", "3"])


def test_paths_with_spaces(trained, tmp_path):
    """An experiment dir with spaces works end to end (extraction and scoring); a data root with spaces is
    refused by stage 2, whose space-separated egs CSV cannot carry it, before anything is marked done."""
    spaced = tmp_path / "my data"
    shutil.copytree(trained / "data" / "train", spaced / "train")
    config = write_config(tmp_path / "exp.yaml", trained, exp_dir=str(tmp_path / "my exp"), data_root=str(spaced),
                          test_sets=[])
    with pytest.raises(SystemExit, match=r"contains whitespace.*egs CSV"):
        main(["--config", str(config)])
    assert not (tmp_path / "my exp" / "egs" / ".done").exists()
    utts = sorted(read_table(trained / "data" / "test" / "utt2spk").items())
    trials = tmp_path / "my trials"
    trials.write_text("".join(f"{a} {b} {'target' if sa == sb else 'nontarget'}\n"
                              for i, (a, sa) in enumerate(utts) for b, sb in utts[i + 1:]))
    exp = tmp_path / "exp dir"
    shutil.copytree(trained / "exp", exp)
    config = write_config(tmp_path / "spaced.yaml", trained, exp_dir=str(exp),
                          test_sets=[{"name": "t", "enroll": "test", "test": "test", "trials": str(trials)}])
    assert main(["--config", str(config), "--train-stage", "0"]) == 0
    assert len(embeddings(exp / "far_epoch_2" / "test")) == 6
    table = subprocess.run(["bash", "recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh", str(exp),
                            "--backend", "cosine"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in table.splitlines() if line.split()[:2] == ["2", "t"])
    assert row[2] == "15" and 0 <= float(row[3]) <= 100


def test_a_record_naming_its_own_copy_is_not_trusted(trained, tmp_path):
    """nnet.config's ``source`` belongs to the experiment: pointing it at the experiment's own (edited) copy
    must not make the copy trusted."""
    exp = tmp_path / "exp"
    shutil.copytree(trained / "exp", exp)
    ran = tmp_path / "blueprint_ran"
    with open(exp / "config" / "blueprint.py", "a") as f:
        f.write(f"\nopen({str(ran)!r}, 'w').close()\n")
    nnet = yaml.safe_load((exp / "config" / "nnet.config").read_text())
    nnet["source"] = str(exp / "config" / "blueprint.py")
    (exp / "config" / "nnet.config").write_text(yaml.safe_dump(nnet))
    from subtools.pytorch.libs.training.checkpoint import UntrustedBlueprintError
    with pytest.raises(UntrustedBlueprintError, match="--trust-blueprint"):
        load_model(str(exp), 2)
    assert not ran.exists()


def test_a_blueprint_the_users_config_names_is_trusted_by_the_launcher_only(trained, tmp_path):
    mine = tmp_path / "my_model.py"
    mine.write_text(open(f"{REPO}/subtools/pytorch/model/xvector.py").read() + "\n# my variant\n")
    config = write_config(tmp_path / "exp.yaml", trained, exp_dir=str(tmp_path / "exp"),
                          model={"blueprint": str(mine), "class": "Xvector",
                                 "params": {"channels": [16, 16, 16, 16, 32], "embd_dim": 16}})
    shutil.copytree(trained / "exp" / "egs", tmp_path / "exp" / "egs")
    assert main(["--config", str(config), "--stage", "3"]) == 0          # trains and extracts
    assert len(embeddings(tmp_path / "exp" / "far_epoch_2" / "test")) == 6
    refused = subprocess.run([*EXTRACT, "--model-dir", str(tmp_path / "exp"), "--epoch", "2",
                              str(trained / "data" / "test"), str(tmp_path / "out")], cwd=REPO, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "--trust-blueprint" in refused.stderr


def test_a_resume_on_another_number_of_processes_stops(trained, tmp_path):
    config = copy_experiment(trained, tmp_path)
    exp = tmp_path / "exp"
    assert (exp / "config" / "processes").read_text().strip() == "1"
    (exp / "2.params").unlink()
    (exp / "config" / "processes").write_text("2\n")        # as if it had started on two GPUs
    with pytest.raises(SystemExit, match="trained with 2 processes, this run has 1"):
        main(["--config", str(config), "--stage", "3"])
    assert not (exp / "2.params").exists()


def test_scoring_refuses_embeddings_of_a_checkpoint_that_changed(trained, tmp_path):
    """2.params replaced after stage 4 (retrained in place, e.g. --train-stage 1 with other data): until
    stage 4 reruns, gather_results skips the epoch's sets instead of scoring embeddings of the old model."""
    exp = tmp_path / "exp"
    shutil.copytree(trained / "exp", exp)
    state = torch.load(exp / "2.params", weights_only=True)
    for value in state["model"].values():
        if value.is_floating_point():
            value.mul_(1.5)
    torch.save(state, exp / "2.params")
    from subtools.score.gather_results import gather
    messages = []
    with pytest.raises(ValueError, match="nothing scored"):
        gather(str(exp), "cosine", log=messages.append)
    assert any("made with another 2.params" in m and "rerun launcher stage 4" in m for m in messages), messages
