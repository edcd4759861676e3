"""read_audio, make_features, compute_vad, make_nosil: outputs, restarts, crashes and bad input."""
import os
import sys
import types

import kaldiio
import numpy as np
import pytest
import soundfile

import subtools.kaldi
from subtools import compute_vad as vad_cli
from subtools import make_features as mf
from subtools import make_nosil as nosil_cli
from subtools.kaldi import data_dir as dd
from subtools.kaldi.audio import AudioError, read_audio
from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.fileio import read_table
from subtools.kaldi.vad import compute_vad, read_vad_conf

RATE = 16000


def tone_bursts(seconds, seed, silent_from=None):
    """int16 audio: noise floor plus 1 kHz-ish bursts (voiced) every other 0.3 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    on = (t // 0.3) % 2 == 0
    x = 20 * rng.standard_normal(n) + on * 6000 * np.sin(2 * np.pi * (900 + 50 * seed) * t)
    if silent_from is not None:
        x[int(silent_from * RATE):] = 0
    return x.astype(np.int16)


def make_data(root, n_spk=3, n_utt=3, extra=None):
    """Data dir with wav files; ``extra`` adds {utt: wav.scp entry} lines (speaker 'bad')."""
    wav_dir, data = os.path.join(root, "wav"), os.path.join(root, "data")
    os.makedirs(wav_dir, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    wav, utt2spk = {}, {}
    for s in range(n_spk):
        for u in range(n_utt):
            utt = f"spk{s}-u{u}"
            path = os.path.join(wav_dir, utt + ".wav")
            soundfile.write(path, tone_bursts(1.0 + 0.37 * u, seed=s * 10 + u), RATE, subtype="PCM_16")
            wav[utt], utt2spk[utt] = path, f"spk{s}"
    for utt, entry in (extra or {}).items():
        wav[utt], utt2spk[utt] = entry, utt.split("-")[0]
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.writelines(f"{u} {wav[u]}\n" for u in sorted(wav))
    with open(os.path.join(data, "utt2spk"), "w") as f:
        f.writelines(f"{u} {utt2spk[u]}\n" for u in sorted(utt2spk))
    dd.DataDir.load(data).save(data)  # writes spk2utt
    return data


def load_scp(path):
    return {k: kaldiio.load_mat(v) for k, v in read_table(path).items()}


# ----------------------------------------------------------------------------- read_audio


def put(path, data):
    path.write_bytes(data)
    return str(path)


def test_read_audio_paths_and_pipes(tmp_path):
    x = tone_bursts(0.5, 1)
    path = str(tmp_path / "a.wav")
    soundfile.write(path, x, RATE, subtype="PCM_16")
    wave, rate = read_audio(path, "u1")
    assert rate == RATE and wave.dtype == np.float32
    np.testing.assert_array_equal(wave, x.astype(np.float32))  # int16 scale, exact
    wave2, _ = read_audio(f"cat {path} |", "u1")
    np.testing.assert_array_equal(wave2, wave)
    flac = str(tmp_path / "a.flac")
    soundfile.write(flac, x, RATE)
    np.testing.assert_array_equal(read_audio(flac, "u1")[0], wave)


@pytest.mark.parametrize(
    "make_entry,message",
    [
        (lambda d: str(d / "missing.wav"), "utterance U: audio file not found"),
        (lambda d: put(d / "empty.wav", b""), "utterance U: audio file is empty"),
        (lambda d: put(d / "junk.wav", b"RIFF1234WAVEjunkjunk" * 10), "utterance U: cannot decode audio"),
        (lambda d: "echo 'boom: no such input' >&2; exit 3 |", "exit 3.*\n  stderr: boom: no such input"),
        (lambda d: "false | cat |", "command failed"),  # pipefail: a failing first command is caught
        (lambda d: "true |", "command printed no audio"),
    ],
)
def test_read_audio_bad_input_names_utterance(tmp_path, make_entry, message):
    with pytest.raises(AudioError, match=message):
        read_audio(make_entry(tmp_path), "U")


def test_read_audio_rate_and_channels(tmp_path):
    stereo = str(tmp_path / "st.wav")
    soundfile.write(stereo, np.stack([tone_bursts(0.3, 1), tone_bursts(0.3, 2)], axis=1), RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match="utterance S: audio has 2 channels"):
        read_audio(stereo, "S")
    np.testing.assert_array_equal(read_audio(stereo, "S", channel=1)[0], tone_bursts(0.3, 2).astype(np.float32))
    slow = str(tmp_path / "8k.wav")
    soundfile.write(slow, tone_bursts(0.3, 1), 8000, subtype="PCM_16")
    with pytest.raises(AudioError, match="utterance R: sample rate 8000 Hz, expected 16000 Hz"):
        read_audio(slow, "R", expected_rate=16000)


def test_augment_pipe_is_rendered_in_process(monkeypatch):
    calls = []

    def render(argv):
        calls.append(argv)
        if "--fail" in argv:
            raise RuntimeError("noise list empty")
        return np.full(800, 7.0, dtype=np.float32), RATE

    fake = types.ModuleType("subtools.kaldi.augment_wav")
    fake.render = render
    monkeypatch.setitem(sys.modules, "subtools.kaldi.augment_wav", fake)
    monkeypatch.setattr(subtools.kaldi, "augment_wav", fake, raising=False)
    entry = "python3 subtools/kaldi/augment_wav.py --type noise --snr 5 --input '/a b/x.wav' |"
    wave, rate = read_audio(entry, "u-noise")
    assert calls == [["--type", "noise", "--snr", "5", "--input", "/a b/x.wav"]]
    assert rate == RATE and wave.shape == (800,) and wave[0] == 7.0
    read_audio("python /abs/repo/subtools/kaldi/augment_wav.py --x 1|", "u2")
    assert calls[-1] == ["--x", "1"]
    with pytest.raises(AudioError, match=r"(?s)utterance u3: command failed \(run in-process\).*RuntimeError: noise list"):
        read_audio("python3 subtools/kaldi/augment_wav.py --fail |", "u3")


# ----------------------------------------------------------------------------- make_features


def test_make_features_parallel_matches_direct_and_restarts(tmp_path, capsys):
    data = make_data(str(tmp_path))
    failed = mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    assert failed == {}
    feats = load_scp(os.path.join(data, "feats.scp"))
    wav = read_table(os.path.join(data, "wav.scp"))
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    assert list(feats) == sorted(wav)
    for utt, mat in feats.items():
        np.testing.assert_array_equal(mat, extractor(read_audio(wav[utt], utt)[0]))
    frames = {k: int(v) for k, v in read_table(os.path.join(data, "utt2num_frames")).items()}
    assert frames == {u: m.shape[0] for u, m in feats.items()}
    assert os.path.isfile(os.path.join(data, "data", "raw_fbank_data.2.ark"))
    assert dd.validate_dir(data) == []
    # rerun: nothing recomputed (arks untouched)
    ark = os.path.join(data, "data", "raw_fbank_data.1.ark")
    mtime = os.stat(ark).st_mtime_ns
    capsys.readouterr()
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    assert os.stat(ark).st_mtime_ns == mtime and "running" not in capsys.readouterr().err
    # changed options: recomputed
    mf.make_features(data, "mfcc", "conf/mfcc.conf", nj=2)
    assert next(iter(load_scp(os.path.join(data, "feats.scp")).values())).shape[1] == 23
    assert open(os.path.join(data, "conf", "feat_type")).read().strip() == "mfcc"


def test_make_features_compressed(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=2)
    mf.main(["--nj", "1", "--compress", "fbank", data])
    ref = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    wav = read_table(os.path.join(data, "wav.scp"))
    for utt, mat in load_scp(os.path.join(data, "feats.scp")).items():
        exact = ref(read_audio(wav[utt], utt)[0])
        span = exact.max() - exact.min()
        assert np.abs(mat - exact).max() < span / 100  # Kaldi speech-feature compression: ~8-bit per column
    assert os.path.getsize(os.path.join(data, "data", "raw_fbank_data.1.ark")) < exact.size * 4 * 2 * 0.5


def test_crash_mid_job_leaves_no_feats_scp_and_rerun_redoes_only_that_job(tmp_path, monkeypatch):
    data = make_data(str(tmp_path), n_spk=2, n_utt=3)
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    clean = load_scp(os.path.join(data, "feats.scp"))
    ark1 = os.path.join(data, "data", "raw_fbank_data.1.ark")
    # change the options so both jobs must rerun, and crash job 2 on its second utterance
    original = mf.FeatureWorker.__call__

    def crashing(self, utt, entry):
        if utt == "spk1-u1":
            raise RuntimeError("simulated crash")
        return original(self, utt, entry)

    monkeypatch.setattr(mf.FeatureWorker, "__call__", crashing)
    with pytest.raises(RuntimeError, match=r"jobs \[2\] failed"):
        mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, compress=True)
    assert not os.path.exists(os.path.join(data, "feats.scp"))  # stale merged output removed, none written
    assert not os.path.exists(os.path.join(data, "utt2num_frames"))
    job2 = os.path.join(data, "data", "raw_fbank_data.2")
    assert not os.path.exists(job2 + ".scp") and not os.path.exists(job2 + ".done")
    assert os.path.exists(ark1.replace(".ark", ".done"))
    assert not [f for f in os.listdir(os.path.join(data, "data")) if f.endswith(".tmp")]
    # in-process (nj=1) crash: no scp, no temp files either
    with pytest.raises(RuntimeError, match="simulated crash"):
        mf.make_features(data, "fbank", "conf/fbank.conf", nj=1)
    assert not os.path.exists(os.path.join(data, "data", "raw_fbank_data.1.scp"))
    assert not [f for f in os.listdir(os.path.join(data, "data")) if f.endswith(".tmp")]
    monkeypatch.setattr(mf.FeatureWorker, "__call__", original)
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, compress=True)
    compressed = open(ark1, "rb").read()
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)  # back to uncompressed: both jobs redone
    assert open(ark1, "rb").read() != compressed and os.path.getsize(ark1) > 2 * len(compressed)
    redone = load_scp(os.path.join(data, "feats.scp"))
    assert list(redone) == list(clean)
    for utt in clean:
        np.testing.assert_array_equal(redone[utt], clean[utt])


def test_bad_utterances_are_skipped_and_listed(tmp_path):
    root = tmp_path
    (root / "empty.wav").write_bytes(b"")
    soundfile.write(str(root / "8k.wav"), tone_bursts(1, 0), 8000, subtype="PCM_16")
    soundfile.write(str(root / "st.wav"), np.zeros((16000, 2), np.int16), RATE, subtype="PCM_16")
    soundfile.write(str(root / "short.wav"), np.zeros(100, np.int16), RATE, subtype="PCM_16")
    bad = {
        "bad-empty": str(root / "empty.wav"),
        "bad-missing": str(root / "nope.wav"),
        "bad-rate": str(root / "8k.wav"),
        "bad-stereo": str(root / "st.wav"),
        "bad-short": str(root / "short.wav"),
        "bad-pipe": "exit 1 |",
    }
    data = make_data(str(root), n_spk=1, n_utt=2, extra=bad)
    failed = mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    assert set(failed) == set(bad)
    listed = read_table(os.path.join(data, "log", "make_fbank.failed"))
    assert listed == failed
    assert "sample rate 8000 Hz" in listed["bad-rate"] and "2 channels" in listed["bad-stereo"]
    assert "too short" in listed["bad-short"] and all(f"utterance {u}" in r for u, r in listed.items())
    assert sorted(read_table(os.path.join(data, "feats.scp"))) == ["spk0-u0", "spk0-u1"]
    assert any("missing" in p for p in dd.validate_dir(data))
    report = dd.fix_dir(data)
    assert set(report.dropped_utts) == set(bad) and dd.validate_dir(data) == []


def test_all_failed_stops_and_unsorted_wav_scp_is_refused(tmp_path):
    data = make_data(str(tmp_path), n_spk=0, extra={"bad-a": "/nope/a.wav", "bad-b": "/nope/b.wav"})
    with pytest.raises(RuntimeError, match="all 2 utterances .* failed"):
        mf.make_features(data, "fbank", "conf/fbank.conf")
    assert not os.path.exists(os.path.join(data, "feats.scp"))
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.write("bad-b /x.wav\nbad-a /y.wav\n")
    with pytest.raises(SystemExit, match="not sorted in C order.*data_dir.py fix"):
        mf.main(["fbank", data])
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.write("bad-a /x.wav\nbad-a /y.wav\n")
    with pytest.raises(SystemExit, match="wav.scp:2: duplicate key 'bad-a'"):
        mf.main(["fbank", data])


# ----------------------------------------------------------------------------- VAD and nosil


def test_vad_from_mfcc_c0_equals_vad_from_audio_energy(tmp_path):
    data = make_data(str(tmp_path), n_spk=2, n_utt=2, extra={"spk9-silent": ""})
    silent = os.path.join(str(tmp_path), "silent.wav")
    soundfile.write(silent, np.zeros(RATE, np.int16), RATE, subtype="PCM_16")
    wav = read_table(os.path.join(data, "wav.scp"))
    wav["spk9-silent"] = silent
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.writelines(f"{u} {wav[u]}\n" for u in sorted(wav))
    mf.make_features(data, "mfcc", "conf/mfcc.conf", nj=2)
    vad_cli.main(["--conf", "conf/vad.conf", data])
    from_c0 = load_scp(os.path.join(data, "vad.scp"))
    feats = load_scp(os.path.join(data, "feats.scp"))
    opts = read_vad_conf("conf/vad.conf")
    for utt, v in from_c0.items():
        assert v.shape == (feats[utt].shape[0],) and set(np.unique(v)) <= {0.0, 1.0}
        np.testing.assert_array_equal(v, compute_vad(feats[utt][:, 0], **opts))
    assert from_c0["spk9-silent"].sum() == 0 and 0 < from_c0["spk0-u0"].mean() < 1
    assert open(os.path.join(data, "log", "vad.zero_voiced")).read().split() == ["spk9-silent"]
    vad_cli.main(["--source", "audio", "--nj", "2", data])
    from_audio = load_scp(os.path.join(data, "vad.scp"))
    for utt in from_c0:
        assert (from_audio[utt] != from_c0[utt]).mean() <= 0.01  # same decisions up to float rounding at ties


def test_fbank_vad_and_nosil(tmp_path):
    data = make_data(str(tmp_path), n_spk=2, n_utt=2, extra={"spk9-late": ""})
    late = os.path.join(str(tmp_path), "late.wav")
    soundfile.write(late, tone_bursts(1.0, 5, silent_from=0.0), RATE, subtype="PCM_16")
    wav = read_table(os.path.join(data, "wav.scp"))
    wav["spk9-late"] = late
    with open(os.path.join(data, "wav.scp"), "w") as f:
        f.writelines(f"{u} {wav[u]}\n" for u in sorted(wav))
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2)
    vad_cli.main([data])  # fbank without energy: log-energy computed from the audio
    vads = load_scp(os.path.join(data, "vad.scp"))
    feats = load_scp(os.path.join(data, "feats.scp"))
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    opts = read_vad_conf("conf/vad.conf")
    for utt in feats:
        energy = extractor.frame_log_energy(read_audio(wav[utt], utt)[0])
        np.testing.assert_array_equal(vads[utt], compute_vad(energy, **opts))
    dst = str(tmp_path / "nosil")
    nosil_cli.main(["--nj", "2", "--cmn-window", "300", data, dst])
    out = load_scp(os.path.join(dst, "feats.scp"))
    assert "spk9-late" not in out  # all-silence: 0 voiced frames, skipped and listed
    assert "0 voiced frames" in read_table(os.path.join(dst, "log", "make_nosil.skipped"))["spk9-late"]
    for utt, mat in out.items():
        np.testing.assert_allclose(mat, sliding_cmn(feats[utt], 300)[vads[utt] > 0.5], atol=1e-6)
    nosil = dd.DataDir.load(dst)
    assert nosil.vad_scp is None and nosil.utt2num_frames == {u: m.shape[0] for u, m in out.items()}
    assert "spk9" not in nosil.spk2utt and dd.validate_dir(dst) == []
