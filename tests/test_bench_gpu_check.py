"""bench/gpu_check.sh without a GPU (the path every CPU machine takes), and its time box: a part that
runs past its limit is killed with its children and reported, not waited for."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

import gpu_check  # noqa: E402


def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(["bash", "bench/gpu_check.sh", "--work", str(tmp_path / "work")], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert run.returncode == 0, run.stdout
    assert "no CUDA device" in run.stdout and "RESULT" not in run.stdout
    assert not (tmp_path / "work").exists()


def test_a_part_past_its_limit_is_killed_and_reported(tmp_path):
    status, _ = gpu_check.run_part("ddp", 1, ["--device", "cpu", "--quick"], str(tmp_path))
    assert status == "TIMED OUT after 1 s"
    assert (tmp_path / "ddp.log").exists()
    assert not (tmp_path / "ddp" / "plain" / "1.params").exists()
