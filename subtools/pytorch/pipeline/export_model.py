#!/usr/bin/env python3
"""Export a trained experiment as a self-contained, calibrated model package (subtools/inference/package.py).

    python3 subtools/pytorch/pipeline/export_model.py --exp-dir EXP --epoch E --out MODEL \\
        [--backend plda|cosine] [--calibration-trials TRIALS --calibration-set SET] [--p-target 0.01] \\
        [--vad-conf conf/vad.conf] [--data-dir DIR] [--trust-blueprint]

What goes in, and where it is read from:

* the network: ``EXP/config/`` (blueprint, nnet.config, params.dict, config.yaml) and the weights of
  ``EXP/<E>.params`` (state dict only, without the classifier); traced to ``network.ts`` (TorchScript) and
  ``network.onnx`` (features -> embedding, any number of frames), each checked against the PyTorch model
  at 1 to 1111 frames (relative difference <= 1e-4) before anything is written;
* the frontend, exactly as the experiment made its data: feature type and options from the ``conf/`` that
  make_features.py wrote in the experiment's data dirs (``DIR``: the first of ``<train_set>`` and the
  test sets' enroll/test dirs under ``data_root`` that has one, all of them required to agree; the
  combined ``<train>_aug`` dir of prepare.sh has none), or of ``--data-dir``; the VAD options of
  ``--vad-conf`` (compute_vad.py does not record its conf; this one is checked by recomputing the VAD of
  up to 3 utterances of DIR from their audio and comparing it with DIR/vad.scp); ``stage0.cmn_window``
  and the ``extract`` options of the config;
* the back-end ``backend.chain`` (``--backend plda``) or ``backend.cosine_chain`` (``cosine``), as
  gather_results caches it in ``EXP/<position>_epoch_<E>/backend/<plda_train_set>/<chain>/`` (fitted there
  on the extracted training embeddings when the cache is absent or stale);
* the calibration (``llr = a * score + b``, calibrate.py's prior-weighted logistic regression at
  ``--p-target``) on ``--calibration-trials`` (labelled), scored between the utterances of
  ``--calibration-set``: a data dir (its ``wav.scp`` audio is embedded by the package itself, the path a
  user's audio takes) or an embedding dir (``xvector.scp``); use speakers of neither the training nor the
  test lists (the demo: ``data/mini_dev`` and its ``trials/mini-dev``). The package's decision threshold
  is the Bayes threshold at ``--p-target``: ``llr >= -logit(p)``. Without calibration trials the package
  embeds and scores but has no LLRs and no decision (``speaker.py verify`` refuses it);
* a model card ``README.md``: the experiment, its training data, config and results tables
  (``EXP/<backend>.results``), the calibration and how to use the package.

The package is written into a temporary directory beside ``--out`` and renamed onto it when complete, so
a killed export leaves no half package; an existing ``--out`` is replaced only if it is a model package.
"""
import argparse
import datetime
import os
import shutil
import sys
import tempfile

import kaldiio
import torch
import yaml

from subtools import resolve_path
from subtools.cli import run_cli
from subtools.inference import package
from subtools.inference.frontend import VAD_CONF, Frontend
from subtools.inference.model import SpeakerModel
from subtools.inference.network import (EmbeddingNetwork, OnnxNetwork, TorchScriptNetwork, check_runtimes,
                                        export_onnx, export_torchscript)
from subtools.kaldi.audio import read_audio
from subtools.kaldi.fileio import atomic_write, read_table
from subtools.kaldi.fingerprint import content_hash
from subtools.kaldi.vad import read_vad_conf
from subtools.pytorch.launcher import stages
from subtools.pytorch.libs.training.checkpoint import (CLASSIFIER, TRUST_HELP, load_model, parse_epoch,
                                                       require_checkpoint)
from subtools.pytorch.pipeline.extract_embeddings import made_with
from subtools.score.calibration import bayes_threshold, fit_calibration
from subtools.score.gather_results import chain_for
from subtools.score.score_sets import BACKEND_ARGS, Backend, EmbeddingSet
from subtools.score.trials import read_trials

FEATURE_CONFS = ("feat_type", "feats.conf", "pitch.conf", "pitch_postprocess.conf")
RECORD = ("blueprint.py", "nnet.config", "params.dict", "config.yaml")
VAD_CHECK_UTTS = 3
VAD_CHECK_AGREEMENT = 0.99   # dithered features may flip frames at the threshold


def read_config(exp_dir):
    path = os.path.join(exp_dir, "config", "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing (not an experiment dir trained by the launcher)")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def data_path(config, name):
    return resolve_path(stages.data_path(config, name))


def feature_data_dir(config, data_dir=None):
    """The data dir whose ``conf/`` gives the experiment's feature options (see module docstring)."""
    if data_dir:
        candidates = [data_dir]
    else:
        tests = config.get("test_sets") or []
        names = [config["train_set"]] + [test[side] for test in tests for side in ("enroll", "test")]
        candidates = list(dict.fromkeys(data_path(config, name) for name in names))
    made = [d for d in candidates if all(os.path.isfile(os.path.join(d, "conf", n)) for n in FEATURE_CONFS[:2])]
    if not made:
        raise FileNotFoundError(f"no conf/feat_type and conf/feats.conf (written by make_features.py) in "
                                f"{', '.join(candidates)}: give --data-dir the data the experiment's features "
                                "came from")
    for other in made[1:]:
        for name in FEATURE_CONFS:
            a, b = (os.path.join(d, "conf", name) for d in (made[0], other))
            if content_hash(a) != content_hash(b):
                raise ValueError(f"{a} and {b} differ: the experiment's data sets were made with different feature "
                                 "options; give --data-dir the one its network was trained on")
    return made[0]


def check_vad_conf(data_dir, frontend, log=print):
    """Recompute the VAD of up to VAD_CHECK_UTTS utterances of ``data_dir`` with plain audio files and
    compare it with ``data_dir/vad.scp``; ValueError when they disagree. Returns the utterances checked."""
    wav_path, vad_path = os.path.join(data_dir, "wav.scp"), os.path.join(data_dir, "vad.scp")
    if not (os.path.isfile(wav_path) and os.path.isfile(vad_path)):
        log(f"VAD options not checked: {data_dir} has no wav.scp and vad.scp")
        return []
    wav, vad = read_table(wav_path), read_table(vad_path)
    utts = [u for u in sorted(vad) if not wav.get(u, "|").rstrip().endswith("|")][:VAD_CHECK_UTTS]
    for utt in utts:
        wave, _ = read_audio(wav[utt], utt, expected_rate=frontend.sample_rate, channel=frontend.channel)
        ours, theirs = frontend.vad(wave, frontend.features(wave)), kaldiio.load_mat(vad[utt])
        agree = float((ours == theirs).mean()) if len(ours) == len(theirs) else 0.0
        if agree < VAD_CHECK_AGREEMENT:
            raise ValueError(f"{vad_path}: the VAD of {utt} recomputed with the package's options agrees on "
                             f"{100 * agree:.1f} % of its frames only: give --vad-conf (and --vad-fix-context) as "
                             f"the experiment's compute_vad.py ran, and --data-dir the data its features came from")
    return utts


def fitted_backend(exp_dir, emb_dir, config, backend_name, checkpoint, checkpoint_sha1, log=print):
    """``(Backend, its cache dir)``: the experiment's back-end of ``backend_name`` (see module docstring),
    fitted on embeddings extracted with the current ``checkpoint`` (whose content has ``checkpoint_sha1``)."""
    bcfg = config.get("backend") or {}
    train_set = bcfg.get("plda_train_set")
    if not train_set:
        raise ValueError(f"{exp_dir}/config/config.yaml: backend.plda_train_set is not set")
    chain = chain_for(backend_name, bcfg)
    if chain.endswith("-asnorm"):
        raise ValueError(f"back-end chain '{chain}': AS-norm needs a cohort at scoring time, which a package does "
                         "not carry; export with --backend plda or cosine")
    train_dir = os.path.join(emb_dir, train_set)
    if not os.path.isfile(os.path.join(train_dir, "xvector.scp")):
        raise FileNotFoundError(f"{train_dir}/xvector.scp: missing (the back-end's training embeddings: run "
                                "launcher stage 4 for this epoch)")
    if made_with(train_dir, checkpoint_sha1) is False:
        raise ValueError(f"{train_dir}: extracted with another {os.path.basename(checkpoint)} (it changed since): "
                         "rerun launcher stage 4 for this epoch")
    cache = os.path.join(emb_dir, "backend", train_set, chain)
    backend = Backend.from_config(chain, bcfg, f"{exp_dir}/config/config.yaml: backend")
    return backend.fit(EmbeddingSet(train_dir), cache, log=log), cache


def write_network(model, out, position, feat_dim):
    """``weights.pt`` (no classifier), ``network.ts`` and ``network.onnx`` of ``model`` under ``out``,
    after checking the traced graphs; returns their relative differences from the eager model."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(CLASSIFIER)}
    with atomic_write(os.path.join(out, package.WEIGHTS), "wb") as f:
        torch.save(state, f)
    network = EmbeddingNetwork(model, position).eval()
    paths = {name: os.path.join(out, name) for name in (package.TORCHSCRIPT, package.ONNX)}
    export_torchscript(network, feat_dim, paths[package.TORCHSCRIPT])
    export_onnx(network, feat_dim, paths[package.ONNX])
    runtimes = {"torchscript": TorchScriptNetwork(paths[package.TORCHSCRIPT], model.min_frames(), position),
                "onnx": OnnxNetwork(paths[package.ONNX], model.min_frames(), position, torch.get_num_threads())}
    return check_runtimes(model, runtimes, position, feat_dim)


def calibration_vectors(speaker_model, trials, calibration_set):
    """``(enroll, test)`` VectorSets for ``trials`` from an embedding dir or a data dir's audio."""
    if os.path.isfile(os.path.join(calibration_set, "xvector.scp")):
        vectors = EmbeddingSet(calibration_set)
        return vectors.side(trials.enroll), vectors.side(trials.test)
    wav_path = os.path.join(calibration_set, "wav.scp")
    if not os.path.isfile(wav_path):
        raise FileNotFoundError(f"{calibration_set}: neither xvector.scp (an embedding dir) nor wav.scp (a data dir)")
    wav = read_table(wav_path)
    keys = list(dict.fromkeys(trials.enroll + trials.test))
    absent = [k for k in keys if k not in wav]
    if absent:
        raise ValueError(f"{trials.source}: {len(absent)} trial keys are not in {wav_path}, first: "
                         f"{', '.join(absent[:5])}")
    vectors = speaker_model.embed_table({k: wav[k] for k in keys})
    return vectors, vectors


def calibrate(model_dir, trials_path, calibration_set, p_target, trust_blueprint, log=print):
    """Fit the package's calibration on the trials and write ``calibration.json``; returns ``(its manifest
    entry, the LinearCalibration)``."""
    speaker_model = SpeakerModel.load(model_dir, trust_blueprint=trust_blueprint)
    trials = read_trials(trials_path, need_labels=True)
    scores = speaker_model.score_trials(trials, *calibration_vectors(speaker_model, trials, calibration_set))
    cal, about = fit_calibration(scores, trials.labels, p_target, os.path.join(model_dir, package.CALIBRATION),
                                 {"trials": os.path.abspath(trials_path), "set": os.path.abspath(calibration_set)})
    log(f"calibration on {trials_path} ({about['targets']} target / {about['nontargets']} nontarget trials): "
        f"llr = {cal.a:.5g} * score + {cal.b:.5g}; Cllr {about['before']['cllr']:.4f} -> "
        f"{about['after']['cllr']:.4f} (minCllr {about['after']['min_cllr']:.4f})")
    return {"file": package.CALIBRATION, "a": cal.a, "b": cal.b, "p_target": p_target, **about}, cal


def training_data_summary(data_dir):
    """``{dir, speakers, utterances[, hours]}`` of the training data dir (hours when utt2dur exists; only
    ``dir`` when it is not on this machine)."""
    summary = {"dir": os.path.abspath(data_dir)}
    if os.path.isfile(os.path.join(data_dir, "utt2spk")):
        utt2spk = read_table(os.path.join(data_dir, "utt2spk"))
        summary.update(speakers=len(set(utt2spk.values())), utterances=len(utt2spk))
    if os.path.isfile(os.path.join(data_dir, "utt2dur")):
        seconds = sum(float(v) for v in read_table(os.path.join(data_dir, "utt2dur")).values())
        summary["hours"] = round(seconds / 3600, 2)
    return summary


def model_card(manifest, exp_dir, config, out):
    """The package's README.md text."""
    src, net, fe, be = manifest["source"], manifest["network"], manifest["frontend"], manifest["backend"]
    cal, decision = manifest["calibration"], manifest["decision"]
    name = os.path.basename(os.path.normpath(exp_dir))
    model_cfg = yaml.safe_dump(config.get("model"), sort_keys=False).strip()
    train = manifest["training_data"]
    lines = [f"# Speaker model `{name}`, epoch {src['epoch']}", "",
             f"Exported {src['exported']} by `subtools/pytorch/pipeline/export_model.py` from `{src['exp_dir']}` "
             f"(checkpoint `{src['checkpoint']}`, sha1 {src['checkpoint_sha1']}).", "",
             "## Network", "",
             f"{net['class']}, {net['parameters']:,} parameters without the classifier; {fe['feat_dim']}-dim "
             f"{fe['feat_type']} input; {net['embedding_dim']}-dim embedding at position `{net['position']}`. "
             f"TorchScript and ONNX copies differ from PyTorch by at most "
             + ", ".join(f"{d:.1e} ({k})" for k, d in net["runtime_differences"].items())
             + " (relative, 1-1111 frames).", "", "```yaml", model_cfg, "```", "",
             "## Training data", "",
             f"`{train['dir']}`: "
             + (f"{train['speakers']} speakers, {train['utterances']} utterances" if "speakers" in train
                else "(not on the exporting machine)")
             + (f", {train['hours']} h" if "hours" in train else "") + "; "
             f"training.epochs {(config.get('training') or {}).get('epochs')} (this package: epoch {src['epoch']}).",
             "",
             "## Input", "",
             f"Audio at {fe['sample_rate']} Hz mono (other rates are resampled, channels averaged); "
             f"{fe['feat_type']} features (`conf/feats.conf`), energy VAD (`conf/vad.conf`), sliding CMN over "
             f"{fe['cmn_window']} frames, voiced frames only; utterances over {net['max_chunk_frames']} frames are "
             "embedded in chunks.", "",
             "## Back-end and calibration", "",
             f"`{be['chain']}` trained on `{be['train_set']}` (`backend/`)."]
    if cal:
        lines += [f"Calibration `llr = {cal['a']:.6g} * score + {cal['b']:.6g}` (prior-weighted logistic "
                  f"regression at p_target {cal['p_target']:g}) on `{cal['trials']}` ({cal['targets']} target, "
                  f"{cal['nontargets']} nontarget trials): Cllr {cal['before']['cllr']:.4f} before, "
                  f"{cal['after']['cllr']:.4f} after (minCllr {cal['after']['min_cllr']:.4f}), actDCF(0.01) "
                  f"{cal['before']['act_dcf_0.01']:.4f} -> {cal['after']['act_dcf_0.01']:.4f}.",
                  f"Decision: `target` iff llr >= {decision['llr_threshold']:.4f} (the Bayes threshold at p_target "
                  f"{decision['p_target']:g}), i.e. raw score >= {decision['score_threshold']:.4f}."]
    else:
        lines += ["Not calibrated: scores are raw back-end scores, not log-likelihood ratios; no decision threshold."]
    for backend_name in ("plda", "cosine"):
        results = os.path.join(exp_dir, f"{backend_name}.results")
        if os.path.isfile(results):
            with open(results) as f:
                lines += ["", f"## Results of the experiment (`{backend_name}.results`)", "", "```", f.read().rstrip(),
                          "```"]
    lines += ["", "## Use", "", "```",
              f"python3 subtools/speaker.py verify --model {out} enroll.wav[,enroll2.wav] test.mp3",
              f"python3 subtools/speaker.py embed --model {out} --out EMB call.mp3 other.m4a",
              f"python3 subtools/speaker.py score --model {out} --wav-scp wav.scp --trials trials --out scores --llr",
              "```", "", "```python", "from subtools.inference import SpeakerModel",
              f"m = SpeakerModel.load({out!r})     # runtime='torchscript' | 'onnx' run network.ts / network.onnx",
              "llr, decision = m.verify('enroll.wav', 'test.mp3')", "```"]
    return "\n".join(lines) + "\n"


def replace_dir(tmp, out):
    """Make the complete package ``tmp`` readable as the umask allows (atomic writes make 0600 files) and
    rename it onto ``out`` (an older package there is removed afterwards)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for root, dirs, files in os.walk(tmp):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)
    if not os.path.exists(out):
        os.replace(tmp, out)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old.", dir=os.path.dirname(out))
    os.rmdir(old)
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old)


def copy_into(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def export(exp_dir, epoch, out, backend_name="plda", calibration_trials=None, calibration_set=None, p_target=0.01,
           vad_conf="conf/vad.conf", vad_fix_context=False, data_dir=None, trust_blueprint=False, log=print):
    """Write the package of ``EXP/<epoch>.params`` to ``out`` (see module docstring); returns its manifest."""
    if (calibration_trials is None) != (calibration_set is None):
        raise ValueError("--calibration-trials and --calibration-set go together")
    if os.path.exists(out) and not os.path.isfile(os.path.join(out, package.MANIFEST)):
        raise ValueError(f"{out} exists and is not a model package: remove it or choose another --out")
    config = read_config(exp_dir)
    checkpoint = require_checkpoint(exp_dir, epoch)
    checkpoint_sha1 = content_hash(checkpoint)
    model = load_model(exp_dir, epoch, trust_blueprint)
    data_dir = feature_data_dir(config, data_dir)
    extract = config.get("extract") or {}
    position = extract.get("position", "far")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        for name in FEATURE_CONFS:
            if os.path.isfile(os.path.join(data_dir, "conf", name)):
                copy_into(os.path.join(data_dir, "conf", name), os.path.join(tmp, package.CONF, name))
        read_vad_conf(resolve_path(vad_conf))  # a bad line is named in the user's file, not in the copy
        copy_into(resolve_path(vad_conf), os.path.join(tmp, package.CONF, VAD_CONF))
        frontend = Frontend.from_dir(tmp, config["stage0"]["cmn_window"], vad_fix_context)
        with open(os.path.join(exp_dir, "config", "nnet.config")) as f:
            nnet = yaml.safe_load(f)
        if frontend.dim != nnet["inputs_dim"]:
            raise ValueError(f"{data_dir}/conf: {frontend.dim}-dim {frontend.extractor.feat_type} features, but the "
                             f"network takes {nnet['inputs_dim']}: give --data-dir the experiment's training data")
        checked = check_vad_conf(data_dir, frontend, log)
        for name in RECORD:
            copy_into(os.path.join(exp_dir, "config", name), os.path.join(tmp, package.CONFIG, name))
        backend, cache = fitted_backend(exp_dir, os.path.join(exp_dir, f"{position}_epoch_{epoch}"), config,
                                        backend_name, checkpoint, checkpoint_sha1, log)
        for name in sorted(os.listdir(cache)):
            if not name.startswith(".") and os.path.isfile(os.path.join(cache, name)):
                copy_into(os.path.join(cache, name), os.path.join(tmp, package.BACKEND, name))
        differences = write_network(model, tmp, position, frontend.dim)
        log(f"network -> {package.TORCHSCRIPT}, {package.ONNX} (largest relative difference from PyTorch: "
            + ", ".join(f"{k} {d:.1e}" for k, d in differences.items()) + ")")
        bcfg = config.get("backend") or {}
        manifest = {
            "source": {"exp_dir": os.path.abspath(exp_dir), "epoch": epoch, "checkpoint": os.path.abspath(checkpoint),
                       "checkpoint_sha1": checkpoint_sha1,
                       "exported": datetime.datetime.now().isoformat(timespec="seconds")},
            "network": {"class": nnet["class"], "inputs_dim": nnet["inputs_dim"],
                        "embedding_dim": model.embedding_dims()[position], "position": position,
                        "min_frames": model.min_frames(), "max_chunk_frames": extract.get("max_chunk_frames", 10000),
                        "extract_min_frames": extract.get("min_frames", 1),
                        "parameters": model.get_model_info()["num_params_without_loss"],
                        "runtime_differences": differences},
            "frontend": {"feat_type": frontend.extractor.feat_type, "sample_rate": frontend.sample_rate,
                         "feat_dim": frontend.dim, "cmn_window": frontend.cmn_window,
                         "vad_fix_context": vad_fix_context, "options_from": os.path.abspath(data_dir),
                         "vad_checked_on": checked},
            "training_data": training_data_summary(data_path(config, config["train_set"])),
            "backend": {"name": backend_name, "chain": backend.chain, "train_set": bcfg["plda_train_set"],
                        "options": {k: bcfg[k] for k in BACKEND_ARGS if k in bcfg}},
            "calibration": None,
            "decision": {"p_target": p_target},
        }
        package.write_manifest(tmp, manifest)
        if calibration_trials:
            manifest["calibration"], cal = calibrate(tmp, calibration_trials, calibration_set, p_target,
                                                     trust_blueprint, log)
            manifest["decision"].update(llr_threshold=bayes_threshold(p_target),
                                        score_threshold=cal.score_threshold())
        with atomic_write(os.path.join(tmp, package.CARD)) as f:
            f.write(model_card(manifest, exp_dir, config, out))
        package.write_manifest(tmp, manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"model package -> {out}")
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment dir (config/ and <epoch>.params)")
    p.add_argument("--epoch", required=True, type=parse_epoch, help="use EXP/<epoch>.params (a number, or avg)")
    p.add_argument("--out", required=True, help="the model package directory to write")
    p.add_argument("--backend", choices=["plda", "cosine"], default="plda",
                   help="back-end chain: the config's backend.chain (plda) or backend.cosine_chain (cosine)")
    p.add_argument("--calibration-trials",
                   help="labelled trials to calibrate on (speakers held out from train and test)")
    p.add_argument("--calibration-set", help="data dir (wav.scp) or embedding dir (xvector.scp) of those trials' keys")
    p.add_argument("--p-target", type=float, default=0.01,
                   help="target prior of the calibration fit and of the decision threshold (default 0.01)")
    p.add_argument("--vad-conf", default="conf/vad.conf", help="the VAD conf the experiment's data used "
                   "(default %(default)s, as recipe/voxceleb/prepare.sh); checked against DATA/vad.scp")
    p.add_argument("--vad-fix-context", action="store_true",
                   help="the data's VAD ran with compute_vad.py --fix-context")
    p.add_argument("--data-dir", help="data dir whose conf/ holds the experiment's feature options (default: "
                   "the config's training or test sets, see above)")
    p.add_argument("--trust-blueprint", action="store_true", help=TRUST_HELP)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_cli(export, args.exp_dir, args.epoch, args.out, args.backend, args.calibration_trials, args.calibration_set,
            args.p_target, args.vad_conf, args.vad_fix_context, args.data_dir, args.trust_blueprint)


if __name__ == "__main__":
    sys.exit(main())
