"""Reliability of the job stages (issue: no stale, corrupted or silently wrong output): locks, retried
failures, changed audio, truncated audio, non-UTF-8 tables, downstream stages after changed features."""
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile

from subtools import make_features as mf
from subtools import make_nosil as nosil_cli
from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.fileio import read_table, write_table
from subtools.kaldi.lock import LockedError, locked
from test_foundation_pipeline import RATE, load_scp, make_data, tone_bursts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD_LOCK = ("import sys; from subtools.kaldi.lock import locked\n"
             "with locked(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


def fbank(path):
    return FeatureExtractor.from_conf("fbank", "conf/fbank.conf")(soundfile.read(path, dtype="int16")[0].astype(np.float32))


def hold_lock(directory):
    """A child process holding ``directory``'s lock until its stdin is closed; returned once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, directory], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def make_flaky(data, monkeypatch, utt, others=None):
    """Make ``utt``'s wav.scp entry a pipe that fails until FLAKY_OK is set (unset now); ``others``:
    further entries to replace. Returns ``(wav.scp as it is now, the audio path utt had)``."""
    wav = read_table(os.path.join(data, "wav.scp"))
    path = wav[utt]
    wav[utt] = f'[ -n "$FLAKY_OK" ] && cat {path} |'
    wav.update(others or {})
    write_table(os.path.join(data, "wav.scp"), wav)
    monkeypatch.delenv("FLAKY_OK", raising=False)
    return wav, path


def test_second_run_on_a_locked_dir_stops_naming_the_holder_or_waits(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    holder = hold_lock(data)
    try:
        with pytest.raises(LockedError, match=rf"in use by pid {holder.pid} .*-c.*--wait"):
            mf.make_features(data, "fbank", "conf/fbank.conf")
        assert not os.path.exists(os.path.join(data, "feats.scp"))
        cli = subprocess.run([sys.executable, "subtools/make_features.py", "fbank", data], cwd=REPO,
                             capture_output=True, text=True)
        assert cli.returncode != 0 and f"in use by pid {holder.pid}" in cli.stderr and "Traceback" not in cli.stderr
        waiting = threading.Thread(target=mf.make_features, args=(data, "fbank", "conf/fbank.conf"),
                                   kwargs={"wait": True})
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive() and not os.path.exists(os.path.join(data, "feats.scp"))   # blocked
        holder.stdin.close()                                                                 # release
        waiting.join()
    finally:
        holder.kill()
    assert set(read_table(os.path.join(data, "feats.scp"))) == {"spk0-u0", "spk0-u1"}
    with locked(data):   # released by the holder's exit and by our own run
        pass


def test_two_concurrent_runs_never_corrupt_the_output(tmp_path):
    """Two make_features on one data dir at once: each either completes or stops naming the lock; the
    feats.scp left behind is complete and equals a clean computation."""
    data = make_data(str(tmp_path), n_spk=2, n_utt=3)
    cmd = [sys.executable, "subtools/make_features.py", "--nj", "2", "fbank", data]
    procs = [subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(), p.stderr.read()) for p in procs]
    for code, err in outcomes:
        assert code == 0 or "in use by pid" in err, err
    assert any(code == 0 for code, _ in outcomes)
    assert b"\0" not in open(os.path.join(data, "feats.scp"), "rb").read()
    wav = read_table(os.path.join(data, "wav.scp"))
    got = load_scp(os.path.join(data, "feats.scp"))
    assert set(got) == set(wav)
    for utt, mat in got.items():
        np.testing.assert_array_equal(mat, fbank(wav[utt]))
    assert not [f for f in os.listdir(os.path.join(data, "data")) if f.endswith(".tmp")]


def test_restored_missing_audio_is_computed_on_rerun(tmp_path):
    data = make_data(str(tmp_path), n_spk=2, n_utt=2)
    wav = read_table(os.path.join(data, "wav.scp"))
    lost = wav["spk1-u0"]
    shutil.move(lost, lost + ".away")
    failed = mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    assert set(failed) == {"spk1-u0"} and "spk1-u0" not in read_table(os.path.join(data, "feats.scp"))
    shutil.move(lost + ".away", lost)
    assert mf.make_features(data, "fbank", "conf/fbank.conf", nj=2) == {}
    got = load_scp(os.path.join(data, "feats.scp"))
    np.testing.assert_array_equal(got["spk1-u0"], fbank(lost))
    assert not os.path.exists(os.path.join(data, "log", "make_fbank.failed"))


def test_a_failure_outside_the_inputs_is_retried_alone(tmp_path, monkeypatch):
    """A pipe that failed for a reason no input file shows (here an environment variable) is retried on
    the next run, and only that item: the complete jobs' arks are not rewritten."""
    data = make_data(str(tmp_path), n_spk=2, n_utt=2)
    wav, flaky = make_flaky(data, monkeypatch, "spk1-u1")
    assert set(mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)) == {"spk1-u1"}
    arks = {n: os.stat(os.path.join(data, "data", n)).st_ino for n in ("raw_fbank_data.1.ark", "raw_fbank_data.2.ark")}
    monkeypatch.setenv("FLAKY_OK", "1")
    assert mf.make_features(data, "fbank", "conf/fbank.conf", nj=2) == {}
    assert {n: os.stat(os.path.join(data, "data", n)).st_ino for n in arks} == arks
    got = load_scp(os.path.join(data, "feats.scp"))
    assert set(got) == set(wav)
    np.testing.assert_array_equal(got["spk1-u1"], fbank(flaky))
    stamp = os.stat(os.path.join(data, "feats.scp")).st_ino
    assert mf.make_features(data, "fbank", "conf/fbank.conf", nj=2) == {}   # now complete: nothing rewritten
    assert os.stat(os.path.join(data, "feats.scp")).st_ino == stamp


def test_audio_replaced_at_the_same_path_is_recomputed(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=3)
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    path = read_table(os.path.join(data, "wav.scp"))["spk0-u1"]
    soundfile.write(path, tone_bursts(1.37, seed=99), RATE, subtype="PCM_16")   # same length, other audio
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    np.testing.assert_array_equal(load_scp(os.path.join(data, "feats.scp"))["spk0-u1"], fbank(path))


def test_truncated_wav_is_listed_as_a_warning(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    path = read_table(os.path.join(data, "wav.scp"))["spk0-u1"]
    full = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(full[: len(full) // 2 + 1])       # odd byte count: a partial last sample too
    assert mf.make_features(data, "fbank", "conf/fbank.conf") == {}
    listed = read_table(os.path.join(data, "log", "make_fbank.warnings"))
    assert list(listed) == ["spk0-u1"] and "truncated wav" in listed["spk0-u1"] and path in listed["spk0-u1"]
    declared = int.from_bytes(full[40:44], "little")
    assert f"declares {declared} bytes" in listed["spk0-u1"]
    assert set(read_table(os.path.join(data, "feats.scp"))) == {"spk0-u0", "spk0-u1"}


def test_non_utf8_table_names_file_and_line(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    with open(os.path.join(data, "wav.scp"), "ab") as f:
        f.write(b"spk0-u9 /audio/caf\xe9.wav\n")
    cli = subprocess.run([sys.executable, "subtools/make_features.py", "fbank", data], cwd=REPO,
                         capture_output=True, text=True)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert f"{data}/wav.scp:3: not UTF-8 text (byte 0xe9 at column 19)" in cli.stderr


def test_nosil_follows_recomputed_features(tmp_path):
    """make_nosil after the features were recomputed with another conf (same utterances, same ark names
    and offsets): the nosil output is redone from the new features, not kept."""
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    mf.make_features(data, "mfcc", "conf/mfcc.conf")
    from subtools.compute_vad import run_compute_vad
    run_compute_vad(data, "conf/vad.conf")
    dst = str(tmp_path / "nosil")
    nosil_cli.make_nosil(data, dst)
    conf = tmp_path / "mfcc2.conf"
    conf.write_text(open("conf/mfcc.conf").read() + "--cepstral-lifter=0\n")
    mf.make_features(data, "mfcc", str(conf))
    nosil_cli.make_nosil(data, dst)
    feats, vads = load_scp(os.path.join(data, "feats.scp")), load_scp(os.path.join(data, "vad.scp"))
    for utt, mat in load_scp(os.path.join(dst, "feats.scp")).items():
        np.testing.assert_allclose(mat, sliding_cmn(feats[utt], 300)[vads[utt] > 0.5], atol=1e-5)


def test_dithered_features_do_not_depend_on_the_job_split(tmp_path):
    """With Kaldi's dither 1.0 (the authors' mfcc23.conf) each utterance's noise is seeded by its id: one
    job or three, the features are identical; another seed gives other features."""
    data = make_data(str(tmp_path), n_spk=2, n_utt=3)
    conf = tmp_path / "dither.conf"
    conf.write_text("--dither=1.0\n--num-mel-bins=23\n")
    mf.make_features(data, "fbank", str(conf), nj=1)
    one = load_scp(os.path.join(data, "feats.scp"))
    mf.make_features(data, "fbank", str(conf), nj=3)
    three = load_scp(os.path.join(data, "feats.scp"))
    assert one.keys() == three.keys() and all(np.array_equal(one[u], three[u]) for u in one)
    extractor = FeatureExtractor.from_conf("fbank", str(conf))
    wave = soundfile.read(read_table(os.path.join(data, "wav.scp"))["spk0-u0"], dtype="int16")[0].astype(np.float32)
    assert not np.array_equal(extractor(wave, seed=1), extractor(wave, seed=2))
    assert np.array_equal(extractor(wave, seed=1), extractor(wave, seed=1))


def test_a_retry_that_recovers_one_item_and_not_another_settles(tmp_path, monkeypatch):
    """Item A fails once, then works; item B always fails. Once A is recovered, reruns append nothing and
    rewrite nothing (the retry ark and feats.scp keep their inodes), and B is still listed."""
    data = make_data(str(tmp_path), n_spk=1, n_utt=3)
    _, flaky = make_flaky(data, monkeypatch, "spk0-u1", others={"spk0-u2": "exit 3 |"})
    assert set(mf.make_features(data, "fbank", "conf/fbank.conf")) == {"spk0-u1", "spk0-u2"}
    monkeypatch.setenv("FLAKY_OK", "1")
    assert set(mf.make_features(data, "fbank", "conf/fbank.conf")) == {"spk0-u2"}
    retry_ark = os.path.join(data, "data", "raw_fbank_data.1.retry.ark")
    inodes = {p: os.stat(p).st_ino for p in (retry_ark, os.path.join(data, "feats.scp"))}
    size = os.path.getsize(retry_ark)
    for _ in range(2):
        assert set(mf.make_features(data, "fbank", "conf/fbank.conf")) == {"spk0-u2"}
    assert {p: os.stat(p).st_ino for p in inodes} == inodes and os.path.getsize(retry_ark) == size
    np.testing.assert_array_equal(load_scp(os.path.join(data, "feats.scp"))["spk0-u1"], fbank(flaky))


def test_a_run_killed_between_its_jobs_and_its_merge_is_not_complete(tmp_path, monkeypatch):
    """The retry recovers an item, then the process dies before writing feats.scp: the next run must write
    feats.scp with that item, not take the old one for complete."""
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    make_flaky(data, monkeypatch, "spk0-u1")
    mf.make_features(data, "fbank", "conf/fbank.conf")
    monkeypatch.setenv("FLAKY_OK", "1")
    original = mf.write_table

    def dies_before_feats_scp(path, table, *args):
        if path.endswith("feats.scp"):
            raise KeyboardInterrupt("killed")
        return original(path, table, *args)

    monkeypatch.setattr(mf, "write_table", dies_before_feats_scp)
    with pytest.raises(KeyboardInterrupt):
        mf.make_features(data, "fbank", "conf/fbank.conf")
    monkeypatch.setattr(mf, "write_table", original)
    assert mf.make_features(data, "fbank", "conf/fbank.conf") == {}
    assert set(read_table(os.path.join(data, "feats.scp"))) == {"spk0-u0", "spk0-u1"}


def test_prepare_reruns_features_when_their_options_change_not_after_a_fix(tmp_path):
    """prepare.sh's stage 2 calls make_features --unless-made-with-these-options: a data dir that fix
    trimmed after a failed utterance is left as it is; one whose audio was replaced in place, or whose
    feature or VAD conf changed, is redone."""
    data = make_data(str(tmp_path), n_spk=1, n_utt=3, extra={"spk0-zbad": "/nowhere/x.wav"})
    cmd = [sys.executable, "subtools/make_features.py", "--unless-made-with-these-options", "--vad-conf",
           "conf/vad.conf", "fbank", data]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    from subtools.kaldi import data_dir as dd
    dd.fix_dir(data)                                   # drops spk0-zbad from wav.scp: every job's items change
    arks = {n: os.stat(os.path.join(data, "data", n)).st_ino for n in os.listdir(os.path.join(data, "data"))
            if n.endswith(".ark")}
    again = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    assert "already holds features made with these options" in again.stderr
    assert {n: os.stat(os.path.join(data, "data", n)).st_ino for n in arks} == arks
    path = read_table(os.path.join(data, "wav.scp"))["spk0-u1"]
    soundfile.write(path, tone_bursts(1.37, seed=99), RATE, subtype="PCM_16")   # same length, other audio
    replaced = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    assert "already holds" not in replaced.stderr
    np.testing.assert_array_equal(load_scp(os.path.join(data, "feats.scp"))["spk0-u1"], fbank(path))
    conf = tmp_path / "vad2.conf"
    conf.write_text(open("conf/vad.conf").read().replace("5.5", "4.0"))
    subprocess.run(cmd[:4] + [str(conf)] + cmd[5:], cwd=REPO, check=True, capture_output=True)
    assert "--vad-energy-threshold=4.0" in open(os.path.join(data, "conf", "vad.conf")).read()
    lower = load_scp(os.path.join(data, "vad.scp"))
    from subtools.kaldi.vad import compute_vad, read_vad_conf
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    wav = read_table(os.path.join(data, "wav.scp"))
    for utt, vad in lower.items():
        energy = extractor.frame_log_energy(soundfile.read(wav[utt], dtype="int16")[0].astype(np.float32))
        np.testing.assert_array_equal(vad, compute_vad(energy, **read_vad_conf(str(conf))))
