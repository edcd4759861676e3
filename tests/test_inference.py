"""Model packages (export_model.py), SpeakerModel and speaker.py on the tiny built-in corpus.

The experiment is a small x-vector with random weights (seeded; nothing here needs a trained network) whose
test-set embeddings come from the recipe's own path: make_features -> compute_vad -> extract_embeddings. The
package must reproduce them from the audio (<= 1e-5; observed: equal), its TorchScript and ONNX networks the
PyTorch model (<= 1e-4) for every pooling and several lengths, its back-end the experiment's scores
(gather_results), and it must refuse bad input with one line naming it and no output.
"""
import os
import shutil
import subprocess
import sys
import types

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
import yaml
from scipy.signal import correlate, correlation_lags

from subtools import speaker
from subtools.compute_vad import run_compute_vad
from subtools.inference import SpeakerModel, package
from subtools.inference.audio_input import load_waveform
from subtools.inference.frontend import Frontend
from subtools.inference.network import (EmbeddingNetwork, OnnxNetwork, TorchScriptNetwork, export_onnx,
                                        export_torchscript)
from subtools.kaldi.fileio import read_table, write_lines, write_table
from subtools.make_features import make_features
from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.training import checkpoint as ckpt
from subtools.pytorch.libs.training.checkpoint import UntrustedBlueprintError
from subtools.pytorch.pipeline import export_model
from subtools.pytorch.pipeline.extract_embeddings import extract
from subtools.score.calibration import LinearCalibration, calibration_metrics
from subtools.score.gather_results import gather
from subtools.score.score_sets import Backend, EmbeddingSet
from subtools.score.trials import read_scores, read_trials

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CHUNK = 400   # frames: most test utterances are embedded in chunks, some whole
MODEL = {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
         "params": {"channels": [48, 48, 48, 48, 96], "pad": True, "pooling": "stats", "embd_dim": 16}}


def load_scp(path):
    return {k: kaldiio.load_mat(v) for k, v in read_table(path).items()}


def run(*args, check=True):
    """A CLI in a subprocess (exit status and stderr as a user sees them)."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{args} failed:\n{proc.stderr}")
    return proc


def cli(capsys, *args):
    """speaker.py in this process (no interpreter start-up): its stdout lines."""
    capsys.readouterr()
    speaker.main(list(args))
    return capsys.readouterr().out.strip().splitlines()


def cli_error(*args):
    """speaker.py in this process on bad input: the one-line message of its exit status 1."""
    with pytest.raises(SystemExit) as stop:
        speaker.main(list(args))
    assert isinstance(stop.value.code, str) and ": error: " in stop.value.code and "\n" not in stop.value.code
    return stop.value.code


@pytest.fixture(scope="module")
def exp(tiny_corpus, tmp_path_factory):
    """The experiment (random weights), its recipe embeddings and gather_results table, and its package."""
    root = tmp_path_factory.mktemp("inference")
    data = root / "data"
    for name in ("mini_train", "mini_test", "mini_dev"):
        shutil.copytree(os.path.join(tiny_corpus.data_dir, name), data / name)
    for name in ("mini_train", "mini_test"):
        make_features(str(data / name), "fbank", os.path.join(REPO, "conf", "fbank.conf"))
        run_compute_vad(str(data / name), os.path.join(REPO, "conf", "vad.conf"))
    exp_dir = root / "exp"
    config = {"exp_dir": str(exp_dir), "data_root": str(data), "train_set": "mini_train", "model": MODEL,
              "stage0": {"cmn_window": 300}, "training": {"epochs": 1},
              "extract": {"position": "far", "max_chunk_frames": MAX_CHUNK, "min_frames": 1, "epochs": [1]},
              "backend": {"plda_train_set": "mini_train", "lda_dim": 6, "plda_smoothing": 0.1},
              "test_sets": [{"name": "mini-O", "enroll": "mini_test", "test": "mini_test",
                             "trials": str(data / "mini_test" / "trials" / "mini-O")}]}
    os.makedirs(exp_dir / "config")
    (exp_dir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    ckpt.write_model_config(str(exp_dir), MODEL, 80, 8)
    torch.manual_seed(0)
    ckpt.save_checkpoint(str(exp_dir / "1.params"), {"epoch": 1, "model": ckpt.build_model(str(exp_dir)).state_dict()})
    for name in ("mini_train", "mini_test"):
        extract(str(exp_dir), 1, str(data / name), str(exp_dir / "far_epoch_1" / name), max_chunk_frames=MAX_CHUNK)
    gather(str(exp_dir), "plda", ci=10, log=lambda *_: None)
    model = root / "model"
    export_model.export(str(exp_dir), 1, str(model), calibration_trials=str(data / "mini_dev" / "trials" / "mini-dev"),
                        calibration_set=str(data / "mini_dev"), log=lambda *_: None)
    return types.SimpleNamespace(root=root, data=data, exp=exp_dir, model=str(model), config=config,
                                 wav=read_table(data / "mini_test" / "wav.scp"),
                                 recipe=load_scp(exp_dir / "far_epoch_1" / "mini_test" / "xvector.scp"))


def test_embed_cli_equals_the_recipe(exp, tmp_path, capsys):
    run("subtools/speaker.py", "embed", "--model", exp.model, "--wav-scp", str(exp.data / "mini_test" / "wav.scp"),
        "--out", str(tmp_path / "scp"))
    got = load_scp(tmp_path / "scp" / "xvector.scp")
    assert sorted(got) == sorted(exp.recipe)
    assert max(np.abs(got[k] - exp.recipe[k]).max() for k in got) <= 1e-5
    model = SpeakerModel.load(exp.model)
    frames = [len(model.voiced_features(path)) for path in exp.wav.values()]
    assert max(frames) > MAX_CHUNK and min(frames) < MAX_CHUNK        # chunked and whole utterances
    # files on the command line: keys are the names without extension
    files = list(exp.wav.values())[:3]
    cli(capsys, "embed", "--model", exp.model, "--out", str(tmp_path / "files"), *files)
    got = load_scp(tmp_path / "files" / "xvector.scp")
    assert sorted(got) == sorted(os.path.basename(f)[:-4] for f in files)
    assert all(np.abs(got[k] - exp.recipe[k]).max() <= 1e-5 for k in got)


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_exported_runtimes_equal_pytorch_on_audio(exp, runtime):
    eager, other = SpeakerModel.load(exp.model), SpeakerModel.load(exp.model, runtime=runtime)
    wave, rate = soundfile.read(exp.wav["te0001-0001"], dtype="int16")
    inputs = list(exp.wav.values())[:4] + [wave[: rate // 4]]         # + 0.25 s: a few frames
    for audio in inputs:
        reference = eager.embed(audio)
        assert np.abs(other.embed(audio) - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


POOLINGS = {
    "stats": ("xvector.py", "Xvector", {"pooling": "stats"}),
    "attentive": ("xvector.py", "Xvector", {"pooling": "attentive", "pooling_params": {"hidden_size": 16}}),
    "multihead": ("xvector.py", "Xvector", {"pooling": "multihead", "pooling_params": {"num_heads": 4}}),
    "serialized": ("xvector.py", "Xvector", {"pooling": "serialized", "pooling_params": {
        "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64}}),
    "serialized-authors": ("serialized-tdnn-xvector.py", "SerializedXvector", {
        "channels": [32, 32, 32], "pooling_params": {
            "d_model": 32, "num_layers": 3, "num_heads": 1, "d_ff": 64, "refine": "utterance", "att_dim": 16,
            "value_proj": False, "out_dim": 32, "pre_norm": True, "layer_norm_eps": 1e-6}}),
}


@pytest.mark.parametrize("pooling,pad", [(name, True) for name in sorted(POOLINGS)] + [("stats", False)])
def test_torchscript_and_onnx_equal_pytorch_for_every_pooling(pooling, pad, tmp_path):
    blueprint, cls_name, params = POOLINGS[pooling]
    cls = load_blueprint(os.path.join(REPO, "subtools", "pytorch", "model", blueprint), cls_name)
    params = {"channels": [32, 32, 32, 32, 64], "embd_dim": 24, **params, "pad": pad}
    torch.manual_seed(1)
    model = cls(20, 7, **params).eval()
    with torch.no_grad():                   # BatchNorm statistics away from their initial 0 / 1
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    network = EmbeddingNetwork(model, "far").eval()
    export_torchscript(network, 20, str(tmp_path / "n.ts"))
    export_onnx(network, 20, str(tmp_path / "n.onnx"))
    runtimes = [TorchScriptNetwork(str(tmp_path / "n.ts"), model.min_frames(), "far"),
                OnnxNetwork(str(tmp_path / "n.onnx"), model.min_frames(), "far", threads=1)]
    gen = torch.Generator().manual_seed(2)
    for frames in sorted({model.min_frames(), 16, 200, 1203}):
        x = torch.randn(1, 20, frames, generator=gen) * 3
        with torch.no_grad():
            reference = model.extract_embedding(x, "far")
        for runtime in runtimes:
            assert (runtime.extract_embedding(x, "far") - reference).abs().max() <= 1e-4, (type(runtime), frames)


def test_any_format_rate_and_channel_count(exp, tmp_path, caplog):
    model = SpeakerModel.load(exp.model)
    path = exp.wav["te0001-0001"]
    wave, rate = soundfile.read(path, dtype="int16")
    reference = model.embed(path)
    np.testing.assert_array_equal(model.embed(wave), reference)                         # int16 array
    np.testing.assert_array_equal(model.embed(wave / 32768.0, sample_rate=rate), reference)
    soundfile.write(tmp_path / "a.flac", wave, rate)
    np.testing.assert_array_equal(model.embed(str(tmp_path / "a.flac")), reference)
    soundfile.write(tmp_path / "stereo.wav", np.stack([wave, wave], axis=1), rate)
    with caplog.at_level("INFO", logger="subtools.inference"):
        np.testing.assert_array_equal(model.embed(str(tmp_path / "stereo.wav")), reference)
    assert "2 channels averaged" in caplog.text
    # lossy formats (mp3, opus: soundfile; m4a: ffmpeg) and other rates / channel counts: the waveform the
    # model sees is the original's (same length within the codecs' padding, correlation > 0.9 at the best lag)
    original = wave.astype(np.float64)
    for name, options in (("a.mp3", []), ("a.opus", []), ("a.m4a", []), ("a44.wav", ["-ar", "44100", "-ac", "2"]),
                          ("a8.wav", ["-ar", "8000"])):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", path, *options, str(tmp_path / name)],
                       check=True)
        caplog.clear()
        with caplog.at_level("INFO", logger="subtools.inference"):
            got = load_waveform(str(tmp_path / name), model.sample_rate).astype(np.float64)
        assert abs(len(got) - len(original)) < 0.06 * rate, name
        lags = correlation_lags(len(got), len(original))
        near = np.abs(lags) <= 0.1 * rate
        peak = correlate(got, original, method="fft")[near].max() / np.linalg.norm(got) / np.linalg.norm(original)
        assert peak > 0.9, (name, peak)
        if name != "a.opus":                                       # opus decodes at 48 kHz
            assert ("resampled" in caplog.text) == (name in ("a44.wav", "a8.wav")), name
        assert model.embed(str(tmp_path / name)).shape == (model.embedding_dim,)


def test_bad_input_is_named_and_writes_nothing(exp, tmp_path):
    good = exp.wav["te0001-0001"]
    soundfile.write(tmp_path / "silence.wav", np.zeros(32000, dtype=np.int16), 16000)
    soundfile.write(tmp_path / "short.wav", np.ones(100, dtype=np.int16), 16000)
    (tmp_path / "garbage.wav").write_bytes(os.urandom(2000))
    (tmp_path / "empty.m4a").write_bytes(b"")
    for bad, words in (("missing.wav", "not found"), ("silence.wav", "no voiced frame"), ("short.wav", "too short"),
                       ("garbage.wav", "cannot decode"), ("empty.m4a", "empty")):
        path = str(tmp_path / bad)
        out = tmp_path / f"out_{bad}"
        message = cli_error("embed", "--model", exp.model, "--out", str(out), good, path)
        assert path in message and words in message, message
        assert not out.exists()
        assert path in cli_error("verify", "--model", exp.model, f"{good},{path}", good)
    # a wav.scp entry is named by its key
    write_table(tmp_path / "wav.scp", {"u1": good, "u2": str(tmp_path / "silence.wav")})
    message = cli_error("embed", "--model", exp.model, "--out", str(tmp_path / "o"),
                        "--wav-scp", str(tmp_path / "wav.scp"))
    assert "u2" in message and "no voiced frame" in message and not (tmp_path / "o").exists()
    # two files with one name
    os.makedirs(tmp_path / "d")
    shutil.copy(good, tmp_path / "d" / "x.wav")
    shutil.copy(good, tmp_path / "x.wav")
    assert "same name 'x'" in cli_error("embed", "--model", exp.model, "--out", str(tmp_path / "o"),
                                        str(tmp_path / "x.wav"), str(tmp_path / "d" / "x.wav"))
    # a model package missing a part
    for part in ("backend/plda.txt", "model.yaml", "network.onnx", "conf/vad.conf"):
        broken = tmp_path / ("broken_" + part.replace("/", "_"))
        shutil.copytree(exp.model, broken)
        os.remove(broken / part)
        message = cli_error("verify", "--model", str(broken), good, good)
        assert str(broken / part) in message and "missing" in message, message
    # as a user sees it: exit status 1, one line on stderr, nothing on stdout
    proc = run("subtools/speaker.py", "verify", "--model", exp.model, good, str(tmp_path / "missing.wav"), check=False)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    expected = f"speaker.py: error: {tmp_path / 'missing.wav'}: audio file not found"
    assert proc.stderr.strip().splitlines()[-1] == expected


def test_untrusted_blueprint_needs_trust_but_exported_runtimes_do_not(exp, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exp.model, copy)
    with open(copy / "config" / "blueprint.py", "a") as f:
        f.write("\nprint('this code would run')\n")
    with pytest.raises(UntrustedBlueprintError, match="--trust-blueprint"):
        SpeakerModel.load(str(copy))
    path = exp.wav["te0002-0001"]
    reference = SpeakerModel.load(exp.model).embed(path)
    assert np.abs(SpeakerModel.load(str(copy), runtime="onnx").embed(path) - reference).max() <= 1e-4
    np.testing.assert_array_equal(SpeakerModel.load(str(copy), trust_blueprint=True).embed(path), reference)


def test_verify_averages_enrollments_as_the_back_end_does(exp, tmp_path, capsys):
    enroll, test = [exp.wav["te0001-0001"], exp.wav["te0001-0002"]], exp.wav["te0001-0003"]
    last = cli(capsys, "verify", "--model", exp.model, ",".join(enroll), test)[-1]
    fields = dict(item.split("=") for item in last.split())
    assert list(fields) == ["score", "llr", "decision"]
    # the experiment's back-end scoring a SITW-style model (a spk2utt speaker of two utterances, n = 2)
    emb = tmp_path / "emb"
    os.makedirs(emb)
    shutil.copy(exp.exp / "far_epoch_1" / "mini_test" / "xvector.scp", emb / "xvector.scp")
    write_lines(emb / "spk2utt", ["model1 te0001-0001 te0001-0002"])
    write_lines(tmp_path / "trials", ["model1 te0001-0003"])
    backend = Backend.from_config("submean-lda-norm-plda", exp.config["backend"])
    backend.fit(EmbeddingSet(str(exp.exp / "far_epoch_1" / "mini_train")),
                str(exp.exp / "far_epoch_1" / "backend" / "mini_train" / "submean-lda-norm-plda"), log=lambda *_: None)
    _, expected = backend.score(read_trials(str(tmp_path / "trials")), EmbeddingSet(str(emb)), EmbeddingSet(str(emb)))
    assert float(fields["score"]) == pytest.approx(expected[0], abs=2e-6)
    model = SpeakerModel.load(exp.model)
    single = model.score(model.embed(enroll[0]), model.embed(test))
    assert abs(single - expected[0]) > 1e-3                            # the average is not one enrollment
    cal = LinearCalibration.load(os.path.join(exp.model, "calibration.json"))
    assert float(fields["llr"]) == pytest.approx(cal.a * float(fields["score"]) + cal.b, abs=2e-6)
    assert fields["decision"] == ("target" if float(fields["llr"]) >= np.log(99) else "nontarget")
    assert model.verify(enroll, test) == (pytest.approx(float(fields["llr"]), abs=2e-6), fields["decision"])
    assert model.verify(enroll, test, p_target=1 - 1e-9)[1] == "target"        # another operating point


def test_score_cli_equals_the_experiments_back_end(exp, tmp_path, capsys):
    trials = str(exp.data / "mini_test" / "trials" / "mini-O")
    wav_scp = str(exp.data / "mini_test" / "wav.scp")
    cli(capsys, "score", "--model", exp.model, "--wav-scp", wav_scp, "--trials", trials, "--out", str(tmp_path / "raw"))
    cli(capsys, "score", "--model", exp.model, "--wav-scp", wav_scp, "--trials", trials, "--out", str(tmp_path / "llr"),
        "--llr", "--runtime", "onnx")
    raw, llr = read_scores(tmp_path / "raw"), read_scores(tmp_path / "llr")
    recipe = read_scores(exp.exp / "far_epoch_1" / "scores" / "plda" / "mini-O.score")     # gather_results
    assert list(raw) == list(recipe) == list(llr)
    assert max(abs(raw[k] - recipe[k]) for k in raw) <= 2e-6
    cal = LinearCalibration.load(os.path.join(exp.model, "calibration.json"))
    assert max(abs(llr[k] - (cal.a * raw[k] + cal.b)) for k in raw) <= 1e-4


def test_package_contents_card_and_calibration(exp, tmp_path):
    manifest = package.read_manifest(exp.model)
    assert manifest["files"] == package.list_files(exp.model)
    assert "weights.pt" in manifest["files"] and "backend/plda.txt" in manifest["files"]
    assert "network.onnx" in manifest["files"] and not any(f.startswith("network.onnx.") for f in manifest["files"])
    umask = os.umask(0)
    os.umask(umask)
    assert {os.stat(os.path.join(exp.model, f)).st_mode & 0o777 for f in manifest["files"]} == {0o666 & ~umask}
    weights = torch.load(os.path.join(exp.model, "weights.pt"), weights_only=True)
    assert weights and not any(k.startswith("loss.") for k in weights)          # no classifier
    assert manifest["frontend"]["vad_checked_on"] and manifest["frontend"]["cmn_window"] == 300
    assert manifest["training_data"] == {"dir": str(exp.data / "mini_train"), "speakers": 8, "utterances": 48,
                                         "hours": manifest["training_data"]["hours"]}
    cal = manifest["calibration"]
    assert cal["targets"] == 24 and cal["nontargets"] == 96                         # tiny mini-dev: every pair
    assert cal["after"]["cllr"] <= cal["before"]["cllr"]
    card = open(os.path.join(exp.model, "README.md")).read()
    assert open(exp.exp / "plda.results").read().strip() in card and f"{cal['a']:.6g}" in card
    # gather_results --calibration: the columns are the library's figures of a * score + b
    table = gather(str(exp.exp), "plda", ci=10, calibration=os.path.join(exp.model, "calibration.json"),
                   log=lambda *_: None).splitlines()
    assert table[1].split()[-4:] == ["Cllr", "minCllr", "actDCF(0.01)", "actDCF(0.001)"]
    trials = read_trials(str(exp.data / "mini_test" / "trials" / "mini-O"))
    scores = read_scores(exp.exp / "far_epoch_1" / "scores" / "plda" / "mini-O.score")
    m = calibration_metrics(cal["a"] * np.array([scores[p] for p in zip(trials.enroll, trials.test)]) + cal["b"],
                            trials.labels)
    assert table[2].split()[-4:] == [f"{m[k]:.4f}" for k in ("cllr", "min_cllr", "act_dcf_0.01", "act_dcf_0.001")]


def test_export_is_atomic_and_checks_its_inputs(exp, tmp_path, monkeypatch):
    out = tmp_path / "pkg"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(export_model, "calibrate", killed)
    with pytest.raises(KeyboardInterrupt):
        export_model.export(str(exp.exp), 1, str(out),
                            calibration_trials=str(exp.data / "mini_dev" / "trials" / "mini-dev"),
                            calibration_set=str(exp.data / "mini_dev"), log=lambda *_: None)
    assert os.listdir(tmp_path) == []                                   # no package, no temp dir
    monkeypatch.undo()
    # an uncalibrated cosine package; exporting over it replaces it whole
    export_model.export(str(exp.exp), 1, str(out), backend_name="cosine", log=lambda *_: None)
    (out / "stray").write_text("old")
    export_model.export(str(exp.exp), 1, str(out), backend_name="cosine", log=lambda *_: None)
    assert not (out / "stray").exists() and sorted(os.listdir(tmp_path)) == ["pkg"]
    model = SpeakerModel.load(str(out))
    assert model.manifest["backend"]["chain"] == "submean-norm-cosine" and model.calibration is None
    with pytest.raises(ValueError, match="no calibration"):
        model.verify(exp.wav["te0001-0001"], exp.wav["te0001-0002"])
    # refused: an --out that is not a package, a VAD conf other than the data's
    os.makedirs(tmp_path / "data_dir")
    with pytest.raises(ValueError, match="not a model package"):
        export_model.export(str(exp.exp), 1, str(tmp_path / "data_dir"), log=lambda *_: None)
    (tmp_path / "vad.conf").write_text("--vad-energy-threshold=9.0\n--vad-energy-mean-scale=0.5\n")
    with pytest.raises(ValueError, match="vad.scp: the VAD of tr0001-0001 recomputed"):
        export_model.export(str(exp.exp), 1, str(tmp_path / "p2"), vad_conf=str(tmp_path / "vad.conf"),
                            log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == ["data_dir", "pkg", "vad.conf"]


def test_feature_options_come_from_the_experiments_data_dirs(tmp_path):
    config = {"data_root": str(tmp_path), "train_set": "train_aug",            # a combined dir: no conf/
              "test_sets": [{"enroll": "enroll", "test": "test"}]}
    for name, bins in (("enroll", 80), ("test", 80)):
        write_lines(tmp_path / name / "conf" / "feat_type", ["fbank"])
        write_lines(tmp_path / name / "conf" / "feats.conf", [f"--num-mel-bins={bins}"])
    assert export_model.feature_data_dir(config) == str(tmp_path / "enroll")
    write_lines(tmp_path / "test" / "conf" / "feats.conf", ["--num-mel-bins=40"])
    with pytest.raises(ValueError, match="enroll/conf/feats.conf and .*test/conf/feats.conf differ"):
        export_model.feature_data_dir(config)
    assert export_model.feature_data_dir(config, str(tmp_path / "test")) == str(tmp_path / "test")
    with pytest.raises(FileNotFoundError, match="no conf/feat_type"):
        export_model.feature_data_dir({**config, "test_sets": []})


@pytest.mark.parametrize("feat_type,conf", [("mfcc", "mfcc.conf"), ("mfcc_pitch", "mfcc23.conf")])
def test_frontend_equals_make_features_and_compute_vad(exp, tmp_path, feat_type, conf):
    data = tmp_path / "data"
    shutil.copytree(exp.data / "mini_test", data, ignore=shutil.ignore_patterns("feats.scp", "vad.scp", "conf",
                                                                                "data", "utt2num_frames", "log"))
    write_table(data / "wav.scp", dict(list(exp.wav.items())[:3]))
    lines = [line for line in open(os.path.join(REPO, "conf", conf)) if not line.startswith("--dither")]
    (tmp_path / "feats.conf").write_text("".join(lines) + "--dither=0\n")   # reproducible, to compare
    pitch = os.path.join(REPO, "conf", "pitch.conf") if feat_type == "mfcc_pitch" else None
    make_features(str(data), feat_type, str(tmp_path / "feats.conf"), pitch_conf=pitch)
    run_compute_vad(str(data), os.path.join(REPO, "conf", "vad.conf"))
    shutil.copy(os.path.join(REPO, "conf", "vad.conf"), data / "conf" / "vad.conf")
    frontend = Frontend.from_dir(str(data), 300)
    feats, vads = load_scp(data / "feats.scp"), load_scp(data / "vad.scp")
    for utt, path in read_table(data / "wav.scp").items():
        wave = soundfile.read(path, dtype="float32")[0] * 32768
        np.testing.assert_array_equal(frontend.features(wave), feats[utt])
        np.testing.assert_array_equal(frontend.vad(wave, feats[utt]), vads[utt])
    # with Kaldi's dither the features are random, but one input gives one output
    dithered = Frontend.from_dir(str(data), 300)
    dithered.extractor.options["dither"] = 1.0
    dithered.extractor.torchaudio_kwargs["dither"] = 1.0
    np.testing.assert_array_equal(dithered.features(wave), dithered.features(wave))
    assert not np.array_equal(dithered.features(wave), feats[utt])
