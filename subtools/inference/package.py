"""A model package: the directory export_model.py writes and SpeakerModel loads, needing nothing else.

    MODEL/model.yaml        manifest: format, source experiment and epoch, network, frontend, back-end,
                            calibration, decision threshold and the list of every file below
    MODEL/README.md         model card (training data, config, the experiment's results, calibration)
    MODEL/conf/             feat_type, feats.conf (+ pitch.conf, pitch_postprocess.conf), vad.conf: the
                            experiment's feature and VAD options, laid out as a data dir's conf/
    MODEL/config/           blueprint.py, nnet.config, params.dict, config.yaml: the experiment's record
    MODEL/weights.pt        the network's state dict without the classifier (torch.load weights_only)
    MODEL/backend/          the trained back-end chain as score_sets.Backend saves it
    MODEL/calibration.json  llr = a * score + b (calibrate.py's format); absent when not calibrated
    MODEL/network.ts        TorchScript of features -> embedding
    MODEL/network.onnx      ONNX of the same (onnxruntime)

A package whose manifest lists a file that is not there is refused, naming the file.
"""
import os

import yaml

from subtools.kaldi.fileio import atomic_write

FORMAT = "subtools-speaker-model/1"
MANIFEST = "model.yaml"
CARD = "README.md"
CONF = "conf"
CONFIG = "config"
WEIGHTS = "weights.pt"
BACKEND = "backend"
CALIBRATION = "calibration.json"
TORCHSCRIPT = "network.ts"
ONNX = "network.onnx"


class IncompletePackageError(FileNotFoundError):
    """A part of a model package is missing."""


def part(model_dir, name):
    """Path of ``name`` in the package; IncompletePackageError naming it when it does not exist."""
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        raise IncompletePackageError(f"{path}: missing (the model package {model_dir} is incomplete; export it "
                                     "again with subtools/pytorch/pipeline/export_model.py)")
    return path


def list_files(model_dir):
    """Every file under ``model_dir``, relative, sorted (the manifest's ``files``)."""
    files = []
    for root, _, names in os.walk(model_dir):
        files += [os.path.relpath(os.path.join(root, n), model_dir) for n in names]
    return sorted(f for f in files if f != MANIFEST)


def write_manifest(model_dir, manifest):
    """Write ``model.yaml`` with ``files`` = what ``model_dir`` holds now."""
    files = list_files(model_dir)
    with atomic_write(os.path.join(model_dir, MANIFEST)) as f:
        yaml.safe_dump({"format": FORMAT, **manifest, "files": files}, f, sort_keys=False)


def read_manifest(model_dir):
    """The manifest of a package, after checking its format and that every file it lists exists."""
    if not os.path.isdir(model_dir):
        raise IncompletePackageError(f"{model_dir}: no such model directory")
    with open(part(model_dir, MANIFEST)) as f:
        manifest = yaml.safe_load(f) or {}
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{model_dir}/{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r} (not a "
                         "model package of this toolkit, or of another version)")
    for name in manifest.get("files") or []:
        part(model_dir, name)
    return manifest
