"""make_features --vad-conf: features and the energy VAD from one read of each utterance's audio, equal to
make_features then compute_vad.py (which reads the audio again for fbank); augmented copies decode their
source once per copy."""
import os
import subprocess
import zlib

import kaldiio
import numpy as np
import pytest
import soundfile

from subtools import make_features as mf
from subtools.compute_vad import SamePassVad, run_compute_vad
from subtools.kaldi import augment, decode
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.fileio import read_table
from subtools.kaldi.vad import read_vad_conf
from test_foundation_pipeline import RATE, load_scp, make_data, tone_bursts

VAD_CONF = "conf/vad.conf"


def silent_utterance(root):
    """{utt: path} of an all-zero utterance (no voiced frame: listed in vad.zero_voiced)."""
    path = os.path.join(root, "silent.wav")
    soundfile.write(path, np.zeros(RATE // 2, dtype=np.int16), RATE, subtype="PCM_16")
    return {"spk9-silent": path}


@pytest.mark.parametrize("feat_type,conf,compress", [("fbank", "conf/fbank.conf", False),   # energy from the audio
                                                     ("mfcc", "conf/mfcc.conf", True)])     # column 0, compressed
def test_one_pass_vad_equals_compute_vad_afterwards(tmp_path, monkeypatch, feat_type, conf, compress):
    one = make_data(str(tmp_path / "one"), n_spk=2, n_utt=2, extra=silent_utterance(str(tmp_path)))
    two = make_data(str(tmp_path / "two"), n_spk=2, n_utt=2, extra=silent_utterance(str(tmp_path)))
    reads = []
    counted = mf.read_audio
    monkeypatch.setattr(mf, "read_audio", lambda entry, utt, **kw: reads.append(utt) or counted(entry, utt, **kw))
    mf.make_features(one, feat_type, conf, compress=compress, vad_conf=VAD_CONF)
    assert sorted(reads) == sorted(read_table(os.path.join(one, "wav.scp")))  # each utterance read once
    mf.make_features(two, feat_type, conf, compress=compress)
    run_compute_vad(two, VAD_CONF)
    for table in ("feats.scp", "vad.scp"):
        got, ref = load_scp(os.path.join(one, table)), load_scp(os.path.join(two, table))
        assert got.keys() == ref.keys() and all(np.array_equal(got[u], ref[u]) for u in ref), table
    vad = load_scp(os.path.join(one, "vad.scp"))
    assert 0 < sum(v.sum() for v in vad.values()) < sum(v.size for v in vad.values())  # a real decision
    for name in ("utt2num_frames", os.path.join("log", "vad.zero_voiced")):
        assert open(os.path.join(one, name)).read() == open(os.path.join(two, name)).read() != ""


def test_compressed_energy_is_read_back_as_the_ark_stores_it(tmp_path):
    data = make_data(str(tmp_path), n_spk=1, n_utt=1)
    mf.make_features(data, "mfcc", "conf/mfcc.conf", compress=True)
    extractor = FeatureExtractor.from_conf("mfcc", "conf/mfcc.conf")
    stored = kaldiio.load_mat(read_table(os.path.join(data, "feats.scp"))["spk0-u0"])
    exact = extractor(tone_bursts(1.0, seed=0).astype(np.float32), seed=zlib.crc32(b"spk0-u0"))
    vad = SamePassVad(extractor, read_vad_conf(VAD_CONF), compress=True)
    assert not np.array_equal(exact, stored) and np.array_equal(vad.stored(exact), stored)


def test_one_pass_reruns_and_retries_keep_the_vad(tmp_path, capsys):
    missing = str(tmp_path / "late.wav")
    data = make_data(str(tmp_path), n_spk=1, n_utt=2, extra={"spk1-late": missing})
    failed = mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, vad_conf=VAD_CONF)
    assert list(failed) == ["spk1-late"] and "spk1-late" not in read_table(os.path.join(data, "vad.scp"))
    soundfile.write(missing, tone_bursts(0.8, seed=7), RATE, subtype="PCM_16")
    assert mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, vad_conf=VAD_CONF) == {}  # the retry job
    vad, feats = load_scp(os.path.join(data, "vad.scp")), load_scp(os.path.join(data, "feats.scp"))
    assert vad.keys() == feats.keys() and all(vad[u].shape == (feats[u].shape[0],) for u in feats)
    before = open(os.path.join(data, "vad.scp")).read()
    capsys.readouterr()
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, vad_conf=VAD_CONF)
    assert "running" not in capsys.readouterr().err and open(os.path.join(data, "vad.scp")).read() == before
    os.remove(os.path.join(data, "vad.scp"))  # a merged output lost: rewritten from the complete jobs
    mf.make_features(data, "fbank", "conf/fbank.conf", nj=2, vad_conf=VAD_CONF)
    assert open(os.path.join(data, "vad.scp")).read() == before


def test_augmented_copies_decode_their_source_once_per_copy(tmp_path, monkeypatch):
    clean = {}
    for i in range(2):
        wav = str(tmp_path / f"c{i}.wav")
        soundfile.write(wav, tone_bursts(1.0, seed=i), RATE, subtype="PCM_16")
        clean[f"spk0-c{i}"] = str(tmp_path / f"c{i}.m4a")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", wav, "-c:a", "aac", clean[f"spk0-c{i}"]], check=True)
    rir = str(tmp_path / "rir.wav")
    soundfile.write(rir, (np.exp(-np.arange(800) / 80.0) * 20000).astype(np.int16), RATE, subtype="PCM_16")
    copies = tmp_path / "copies"
    copies.mkdir()
    wav_scp = {f"{u}-{k}": augment.render_entry(f"{u}-{k}", e, ["--rir", rir] if k == "reverb" else ["--bg", rir, "5"])
               for u, e in clean.items() for k in ("reverb", "music")}
    (copies / "wav.scp").write_text("".join(f"{u} {e}\n" for u, e in sorted(wav_scp.items())))
    (copies / "utt2spk").write_text("".join(f"{u} spk0\n" for u in sorted(wav_scp)))
    decoded = []
    real = decode.decode
    monkeypatch.setattr(decode, "decode", lambda path: decoded.append(path) or real(path))
    assert mf.make_features(str(copies), "fbank", "conf/fbank.conf") == {}
    assert sorted(decoded) == sorted(list(clean.values()) * 2)  # 4 copies, each decodes its m4a once
    assert len(load_scp(str(copies / "feats.scp"))) == 4
