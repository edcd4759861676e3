"""Corpus preparation scripts on tiny fake trees in the real layouts (VoxCeleb1/2, SITW, MUSAN,
RIRS_NOISES) with the real list-file formats, and prepare.sh stage 0 as a subprocess."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from subtools.kaldi import trials as trials_lib
from subtools.kaldi.data_dir import DataDir, validate_dir

SR = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = os.path.join(REPO, "recipe", "voxceleb", "local")


def _wav(path, seconds=0.25, seed=0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wave = (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 1000).astype(np.int16)
    soundfile.write(path, wave, SR, format=fmt)


def _lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _run(script, *args, check=True):
    proc = subprocess.run([sys.executable, os.path.join(LOCAL, script), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


VOX1_SPEAKERS = ("id10001", "id10002", "id10270", "id10271")  # 2 dev + 2 test speakers


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    # VoxCeleb1: dev and test archives unpacked separately, 2 videos x 2 utterances per speaker
    vox1 = root / "voxceleb1"
    for i, spk in enumerate(VOX1_SPEAKERS):
        part = "vox1_test_wav" if spk >= "id10270" else "vox1_dev_wav"
        for vid in ("aAaA1", "bB_b-2"):
            for n in (1, 2):
                _wav(vox1 / part / "wav" / spk / vid / f"{n:05d}.wav", seed=i * 10 + n)
    t = ["id10270/aAaA1/00001.wav", "id10270/bB_b-2/00002.wav", "id10271/aAaA1/00001.wav"]
    _lines(vox1 / "veri_test.txt", [f"1 {t[0]} {t[1]}", f"0 {t[0]} {t[2]}", f"0 {t[1]} {t[2]}"])
    _lines(vox1 / "veri_test2.txt", [f"1 {t[0]} {t[1]}", f"0 {t[0]} {t[2]}"])
    _lines(vox1 / "list_test_all.txt", ["1 id10001/aAaA1/00001.wav id10001/bB_b-2/00001.wav",
                                        f"0 id10001/aAaA1/00001.wav {t[0]}", f"1 {t[0]} {t[1]}", f"0 {t[1]} {t[2]}"])
    _lines(vox1 / "list_test_hard.txt", ["1 id10002/aAaA1/00001.wav id10002/aAaA1/00002.wav",
                                         "0 id10002/aAaA1/00001.wav id19999/zzz/00001.wav"])  # absent utterance
    _lines(vox1 / "vox1_meta.csv", ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet",
                                    "id10001\tA.J._Buckley\tm\tIreland\tdev", "id10002\tA.R._Rahman\tm\tIndia\tdev",
                                    "id10270\tEvan_Rachel_Wood\tf\tUSA\ttest", "id10271\tGwyneth_Paltrow\tf\tUSA\ttest"])
    # VoxCeleb2 dev: m4a made with ffmpeg (3 good, 1 corrupt)
    vox2 = root / "voxceleb2"
    wav = root / "tmp.wav"
    _wav(str(wav), seconds=0.5)
    for spk, vid, n in (("id00012", "21Uxsk56VDQ", 1), ("id00012", "21Uxsk56VDQ", 2), ("id00015", "0fijmz4vTVU", 1)):
        dst = vox2 / "dev" / "aac" / spk / vid / f"{n:05d}.m4a"
        os.makedirs(dst.parent, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(dst)], check=True)
    _lines(vox2 / "dev" / "aac" / "id00015" / "0fijmz4vTVU" / "00002.m4a", ["not an m4a file"])
    # SITW: dev and eval, flac audio, core lists and key
    sitw = root / "sitw"
    for s, subset in enumerate(("dev", "eval")):
        base = sitw / subset
        files = [f"{subset}f{i}" for i in range(5)]
        for i, f in enumerate(files):
            _wav(str(base / "audio" / f"{f}.flac"), seed=100 + 10 * s + i, fmt="FLAC")
        _lines(base / "lists" / "enroll-core.lst", [f"1001{s} audio/{files[0]}.flac", f"1002{s} audio/{files[1]}.flac",
                                                    f"1002{s} audio/{files[2]}.flac"])
        _lines(base / "lists" / "test-core.lst", [f"audio/{f}.flac" for f in files[2:]])
        _lines(base / "keys" / "core-core.lst", [f"1001{s} audio/{files[3]}.flac tgt",
                                                 f"1001{s} audio/{files[4]}.flac imp",
                                                 f"1002{s} audio/{files[3]}.flac imp",
                                                 f"1002{s} audio/{files[2]}.flac tgt"])
    # MUSAN
    musan = root / "musan"
    for name in ("music-fma-0000", "music-fma-0001", "music-fma-0002"):
        _wav(str(musan / "music" / "fma" / f"{name}.wav"))
    _lines(musan / "music" / "fma" / "ANNOTATIONS", ["music-fma-0000 rock Y artist1", "music-fma-0001 jazz N artist2",
                                                     "music-fma-0009 pop N artist3"])  # 0002 unannotated, 0009 absent
    for name in ("noise-free-sound-0000", "noise-free-sound-0001"):
        _wav(str(musan / "noise" / "free-sound" / f"{name}.wav"))
    _lines(musan / "noise" / "free-sound" / "ANNOTATIONS", ["noise-free-sound-0000 url1", "noise-free-sound-0001 url2"])
    for name in ("speech-librivox-0000", "speech-us-gov-0000"):
        sub = name.split("-")[1] if "librivox" in name else "us-gov"
        _wav(str(musan / "speech" / sub / f"{name}.wav"))
    # RIRS_NOISES (the directory under another name, to check the RIRS_NOISES/ prefix mapping)
    rirs = root / "rirs_noises_copy"
    for room, n in (("smallroom", 3), ("mediumroom", 2)):
        entries = []
        for k in range(1, n + 1):
            rel = f"simulated_rirs/{room}/Room001/Room001-{k:05d}.wav"
            _wav(str(rirs / rel), seconds=0.1)
            entries.append(f"--rir-id {room}-Room001-{k:05d} --room-id {room}-Room001 RIRS_NOISES/{rel}")
        _lines(rirs / "simulated_rirs" / room / "rir_list", entries)
    return root


def test_trials_conversion_and_errors(tmp_path):
    assert trials_lib.vox1_utt_id("id10270/5r0dWxy17C8/00001.wav") == "id10270-5r0dWxy17C8-00001"
    _lines(tmp_path / "l.txt", ["1 id10270/a/00001.wav id10270/b/00002.wav", "", "2 id10270/a/00001.wav x/y/z.wav"])
    with pytest.raises(ValueError, match=r"l\.txt:3"):
        trials_lib.read_vox1_list(tmp_path / "l.txt")
    _lines(tmp_path / "k.lst", ["10010 audio/abcde.flac tgt", "10011 audio/fghij.flac imp"])
    got = trials_lib.read_sitw_key(tmp_path / "k.lst")
    assert trials_lib.format_trials(got) == ["10010 abcde target", "10011 fghij nontarget"]
    with pytest.raises(ValueError, match="1 key.*10011"):
        trials_lib.check_trials(got, ["10010"], ["abcde", "fghij"], "k.lst")


def test_voxceleb1(corpora, tmp_path):
    out = tmp_path / "data"
    proc = _run("make_voxceleb1.py", "--vox1", corpora / "voxceleb1", "--nj", 2, out)
    full, train, test = (DataDir.load(str(out / n)) for n in ("voxceleb1", "voxceleb1_train", "voxceleb1_test"))
    assert (len(full.utts()), len(full.spk2utt)) == (16, 4)
    assert (len(train.utts()), sorted(train.spk2utt)) == (8, ["id10001", "id10002"])
    assert (len(test.utts()), sorted(test.spk2utt)) == (8, ["id10270", "id10271"])
    assert "id10270-bB_b-2-00002" in full.utt2spk and full.tables["spk2gender"]["id10270"] == "f"
    assert abs(full.utt2dur["id10001-aAaA1-00001"] - 0.25) < 1e-6
    assert all(validate_dir(str(out / n)) == [] for n in ("voxceleb1", "voxceleb1_train", "voxceleb1_test"))
    counts = {n: trials_lib.count_trials(trials_lib.read_trials(out / "voxceleb1" / "trials" / n))
              for n in sorted(os.listdir(out / "voxceleb1" / "trials"))}
    assert counts == {"O": (1, 2), "O-clean": (1, 1), "E": (2, 2)}
    assert sorted(os.listdir(out / "voxceleb1_test" / "trials")) == ["O", "O-clean"]
    assert open(out / "voxceleb1" / "trials" / "O").readline() == \
        "id10270-aAaA1-00001 id10270-bB_b-2-00002 target\n"
    assert "list_test_hard.txt" in proc.stderr and "id19999-zzz-00001" in proc.stderr  # H skipped, named


def test_voxceleb1_missing_dir_is_named(tmp_path):
    proc = _run("make_voxceleb1.py", "--vox1", tmp_path, tmp_path / "data", check=False)
    assert proc.returncode != 0 and "vox1_test_wav/wav" in proc.stderr and str(tmp_path) in proc.stderr


def test_voxceleb2_pipes_and_bad_m4a(corpora, tmp_path):
    out = tmp_path / "data"
    proc = _run("make_voxceleb2.py", "--vox2", corpora / "voxceleb2", "--pipes", "--check-audio", "--nj", 2, out)
    data = DataDir.load(str(out / "voxceleb2_dev"))
    assert (len(data.utts()), len(data.spk2utt)) == (3, 2)
    entry = data.wav_scp["id00012-21Uxsk56VDQ-00001"]
    assert entry.startswith("ffmpeg -v 8 -i ") and entry.endswith("-f wav -acodec pcm_s16le - |")
    bad = open(out / "voxceleb2_dev" / "bad_audio").read()
    assert bad.startswith("id00015-0fijmz4vTVU-00002 ") and "00002.m4a" in bad and "failed" in bad
    assert "1 unreadable" in proc.stdout
    from subtools.kaldi.audio import read_audio
    wave, rate = read_audio(entry, "id00012-21Uxsk56VDQ-00001")
    assert rate == SR and abs(wave.size - 0.5 * SR) < 0.1 * SR
    # converting once to flac instead
    _run("make_voxceleb2.py", "--vox2", corpora / "voxceleb2", "--pipes", "--convert", "flac", "--audio-dir",
         tmp_path / "flac", out)
    converted = DataDir.load(str(out / "voxceleb2_dev"))
    assert len(converted.utts()) == 3 and converted.wav_scp["id00015-0fijmz4vTVU-00001"].endswith(".flac")
    assert np.array_equal(read_audio(converted.wav_scp["id00012-21Uxsk56VDQ-00001"], "u")[0], wave)


def test_voxceleb2_default_m4a_paths_with_utt2dur_from_headers(corpora, tmp_path):
    from subtools.kaldi.audio import read_audio

    proc = _run("make_voxceleb2.py", "--vox2", corpora / "voxceleb2", "--nj", 2, tmp_path / "data")
    data = DataDir.load(str(tmp_path / "data" / "voxceleb2_dev"))
    assert len(data.utts()) == 3 and all(e.endswith(".m4a") and os.path.isfile(e) for e in data.wav_scp.values())
    for utt, entry in data.wav_scp.items():  # the decoded length (AAC frames less the priming), not 0.5 s
        assert data.utt2dur[utt] == len(read_audio(entry, utt)[0]) / SR != 0.5
    bad = open(tmp_path / "data" / "voxceleb2_dev" / "bad_audio").read()  # its container is unreadable
    assert bad.startswith("id00015-0fijmz4vTVU-00002 ") and "FFmpeg" in bad and "1 unreadable" in proc.stdout


def test_sitw(corpora, tmp_path):
    out = tmp_path / "data"
    _run("make_sitw.py", "--sitw", corpora / "sitw", out)
    enroll, test = DataDir.load(str(out / "sitw_dev_enroll")), DataDir.load(str(out / "sitw_dev_test"))
    assert sorted(enroll.utts()) == ["10010_devf0", "10020_devf1", "10020_devf2"]
    assert enroll.spk2utt == {"10010": ["10010_devf0"], "10020": ["10020_devf1", "10020_devf2"]}
    assert test.utts() == ["devf2", "devf3", "devf4"] and test.utt2spk["devf3"] == "devf3"
    assert open(out / "sitw_dev_test" / "trials" / "core-core.lst").read().splitlines() == [
        "10010 devf3 target", "10010 devf4 nontarget", "10020 devf3 nontarget", "10020 devf2 target"]
    assert os.path.isfile(out / "sitw_eval_test" / "trials" / "core-core.lst")
    assert validate_dir(str(out / "sitw_eval_enroll")) == []


def test_sitw_absent_audio_is_named(corpora, tmp_path):
    sitw = tmp_path / "sitw"
    shutil.copytree(corpora / "sitw", sitw)
    os.remove(sitw / "dev" / "audio" / "devf3.flac")
    proc = _run("make_sitw.py", "--sitw", sitw, tmp_path / "data", check=False)
    assert proc.returncode != 0 and "test-core.lst:2" in proc.stderr and "devf3.flac" in proc.stderr


def test_musan_and_rirs(corpora, tmp_path):
    out = tmp_path / "data"
    proc = _run("make_musan.py", "--musan", corpora / "musan", out)
    music = DataDir.load(str(out / "musan_music"))
    assert music.utts() == ["music-fma-0000", "music-fma-0001"]  # annotated and present
    assert "music-fma-0009" in proc.stderr and "music-fma-0002" in proc.stderr
    assert len(DataDir.load(str(out / "musan_noise")).utts()) == 2
    assert DataDir.load(str(out / "musan_speech")).utts() == ["speech-librivox-0000", "speech-us-gov-0000"]
    _run("make_musan.py", "--musan", corpora / "musan", "--no-vocals", out)
    assert DataDir.load(str(out / "musan_music")).utts() == ["music-fma-0001"]
    _run("make_rirs.py", "--rirs", corpora / "rirs_noises_copy", out)
    small = DataDir.load(str(out / "rirs_smallroom"))
    assert len(small.utts()) == 3 and len(DataDir.load(str(out / "rirs_mediumroom")).utts()) == 2
    assert small.wav_scp["smallroom-Room001-00002"] == str(
        corpora / "rirs_noises_copy" / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00002.wav")
    assert small.tables["utt2room"]["smallroom-Room001-00001"] == "smallroom-Room001"


def test_prepare_stage0(corpora, tmp_path):
    out = tmp_path / "data"
    cmd = ["bash", os.path.join(REPO, "recipe", "voxceleb", "prepare.sh"), "--vox1", corpora / "voxceleb1",
           "--sitw", corpora / "sitw", "--musan", corpora / "musan", "--rirs", corpora / "rirs_noises_copy",
           "--data", out, "--stage", "0", "--endstage", "0", "--nj", "2"]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("voxceleb1", "voxceleb1_train", "voxceleb1_test", "sitw_dev_enroll", "sitw_dev_test",
                 "sitw_eval_enroll", "sitw_eval_test", "musan_music", "musan_noise", "musan_speech",
                 "rirs_smallroom", "rirs_mediumroom"):
        assert os.path.isfile(out / name / "wav.scp"), name
    assert f"{out}/voxceleb1: 4 speakers, 16 utterances" in proc.stdout
    assert "trials/E: 4 trials (2 target, 2 nontarget)" in proc.stdout
    missing = subprocess.run(["bash", os.path.join(REPO, "recipe", "voxceleb", "prepare.sh"), "--vox2",
                              str(tmp_path / "nowhere"), "--data", str(out)], capture_output=True, text=True)
    assert missing.returncode != 0 and "nowhere" in missing.stderr
