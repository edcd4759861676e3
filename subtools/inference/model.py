"""SpeakerModel: a model package used on any audio (embeddings, back-end scores, calibrated decisions).

    from subtools.inference import SpeakerModel
    m = SpeakerModel.load("exp/mini_serialized/model")        # runtime="torch" | "torchscript" | "onnx"
    e = m.embed("call.mp3")                                     # [E] float32; or m.embed(array, sample_rate=8000)
    s = m.score(m.embed("a.wav"), e)                            # raw back-end score (PLDA LLR / cosine)
    llr, decision = m.verify(["enroll1.wav", "enroll2.flac"], "call.mp3")   # decision: target | nontarget

An embedding is the recipe's: the audio is brought to the model's rate and one channel
(:mod:`~subtools.inference.audio_input`), the frontend makes the features, VAD and CMN the experiment used
(:mod:`~subtools.inference.frontend`), and the network embeds the voiced frames with the extraction's own
:func:`~subtools.pytorch.pipeline.extract_embeddings.embed_utterance` (long utterances in chunks, short ones
repeated). Several enrollment embeddings are averaged and scored with n = their count, as the back-end does
for SITW models. ``llr = a * score + b`` (the package's calibration); the decision is ``target`` iff
``llr >= -logit(p_target)``, ``p_target`` the package's operating prior unless given.
"""
import os

import numpy as np
import torch

from subtools.inference import package
from subtools.inference.audio_input import load_waveform
from subtools.inference.frontend import Frontend
from subtools.inference.network import RUNTIMES, OnnxNetwork, TorchScriptNetwork
from subtools.pytorch.libs.training.checkpoint import CLASSIFIER, build_model
from subtools.pytorch.pipeline.extract_embeddings import embed_utterance
from subtools.score.calibration import LinearCalibration, bayes_threshold
from subtools.score.score_sets import Backend
from subtools.score.trials import resolve_trials
from subtools.score.vectors import VectorSet

TARGET, NONTARGET = "target", "nontarget"


def load_weights(model, path):
    """Load a package's state dict (``torch.load(weights_only=True)``; no classifier) into ``model``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: name it
        raise ValueError(f"{path}: unreadable weights ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(CLASSIFIER)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the package's network (missing: {', '.join(missing[:5]) or '-'};"
                         f" unexpected: {', '.join(unexpected[:5]) or '-'})")
    return model.eval()


class SpeakerModel:
    """A loaded model package (see module docstring). Attributes: ``manifest`` (dict of model.yaml),
    ``frontend``, ``network`` (the runtime), ``backend`` (score_sets.Backend), ``calibration``
    (LinearCalibration or None), ``p_target`` (the operating prior of :meth:`verify`)."""

    def __init__(self, model_dir, manifest, frontend, network, backend, calibration):
        self.model_dir, self.manifest = model_dir, manifest
        self.frontend, self.network, self.backend, self.calibration = frontend, network, backend, calibration
        net = manifest["network"]
        self.position = net["position"]
        self.extract_options = dict(max_chunk_frames=net["max_chunk_frames"], min_frames=net["extract_min_frames"],
                                    position=self.position)
        self.p_target = manifest["decision"]["p_target"]

    @classmethod
    def load(cls, model_dir, runtime="torch", trust_blueprint=False, threads=None):
        """Load the package ``model_dir``. ``runtime``: torch (the project's blueprint + weights; a blueprint
        copy that differs from the project's file is refused unless ``trust_blueprint``), torchscript or onnx
        (``network.ts`` / ``network.onnx``, no model code runs). ``threads``: CPU threads (torch's process-wide
        setting, and onnxruntime's; default: leave torch's as it is). A missing part is an error naming it."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: expected one of {RUNTIMES}")
        manifest = package.read_manifest(model_dir)
        if threads:
            torch.set_num_threads(threads)
        net = manifest["network"]
        frontend = Frontend.from_dir(model_dir, manifest["frontend"]["cmn_window"],
                                     manifest["frontend"]["vad_fix_context"])
        if runtime == "torch":
            model = build_model(model_dir, trust_blueprint, package.part(model_dir, package.CONFIG))
            network = load_weights(model, package.part(model_dir, package.WEIGHTS))
        elif runtime == "torchscript":
            network = TorchScriptNetwork(package.part(model_dir, package.TORCHSCRIPT), net["min_frames"],
                                         net["position"])
        else:
            network = OnnxNetwork(package.part(model_dir, package.ONNX), net["min_frames"], net["position"], threads)
        b = manifest["backend"]
        backend = Backend(b["chain"], **b["options"])
        backend.load(package.part(model_dir, package.BACKEND))
        calibration = (LinearCalibration.load(package.part(model_dir, package.CALIBRATION))
                       if manifest.get("calibration") else None)
        return cls(model_dir, manifest, frontend, network, backend, calibration)

    @property
    def sample_rate(self):
        return self.frontend.sample_rate

    @property
    def embedding_dim(self):
        return int(self.manifest["network"]["embedding_dim"])

    def voiced_features(self, audio, sample_rate=None, name=None):
        """CMN'd voiced features ``[T, F]`` of a path, wav.scp pipe entry or array (see :meth:`embed`)."""
        wave = load_waveform(audio, self.sample_rate, self.frontend.channel, sample_rate, name)
        path = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else None
        label = f"{name} ({path})" if name and path else name or path or "audio array"
        return self.frontend(wave, label)

    def embed(self, audio, sample_rate=None, name=None):
        """Embedding float32 ``[E]`` of ``audio``: a file path (any format soundfile or ffmpeg decodes), a
        wav.scp pipe entry (``cmd |``), or an array ``[N]`` / ``[N, C]`` (float in [-1, 1] or integer PCM) at
        ``sample_rate`` Hz (default: the model's). ``name`` labels messages. ValueError (naming the input)
        for unreadable audio or audio without a voiced frame."""
        feats = self.voiced_features(audio, sample_rate, name)
        return embed_utterance(self.network, feats, **self.extract_options)

    def embed_table(self, sources):
        """``{key: path or wav.scp entry}`` -> VectorSet of their embeddings (key order); stops at the first
        input that fails, with an error naming its key."""
        if not sources:
            raise ValueError("no audio to embed")
        return VectorSet(list(sources), np.stack([self.embed(source, name=key) for key, source in sources.items()]))

    def _pairs(self, enroll, test, ie, it):
        """Back-end scores of VectorSets ``enroll`` (rows averaged over ``counts``) and ``test``."""
        scorer = self.backend.scorer
        E = scorer.enroll_side(self.backend.process(enroll))
        T = scorer.test_side(self.backend.process(test))
        return scorer.pairs(E, T, np.asarray(ie), np.asarray(it))

    def score(self, enroll, test):
        """Raw back-end score of embeddings: ``enroll`` ``[E]`` or ``[n, E]`` (n enrollment embeddings,
        averaged, n = the count), ``test`` ``[E]``."""
        enroll = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
        test = np.asarray(test, dtype=np.float64).reshape(1, -1)
        for what, x in (("enroll", enroll), ("test", test)):
            if x.shape[1] != self.embedding_dim or x.ndim != 2:
                raise ValueError(f"{what} embedding of shape {list(x.shape)}: this model's embeddings have "
                                 f"{self.embedding_dim} dimensions")
        mean = VectorSet(["enroll"], enroll.mean(axis=0, keepdims=True), [len(enroll)])
        return float(self._pairs(mean, VectorSet(["test"], test), [0], [0])[0])

    def score_trials(self, trials, enroll, test):
        """Raw scores ``[M]`` of :class:`~subtools.score.trials.Trials` between VectorSets ``enroll`` and
        ``test``; a trial naming an absent key stops, naming it."""
        ie, it, _ = resolve_trials(trials, enroll, test, "stop")
        return self._pairs(enroll, test, ie, it)

    def llr(self, scores):
        """Calibrated LLRs of raw scores; ValueError when the package has no calibration."""
        if self.calibration is None:
            raise ValueError(f"{self.model_dir} has no calibration (export it with --calibration-trials and "
                             "--calibration-set) so its scores are not log-likelihood ratios")
        return self.calibration.apply(scores)

    def decide(self, llr, p_target=None):
        """``target`` iff ``llr >= -logit(p_target)`` (default: the package's operating prior)."""
        return TARGET if llr >= bayes_threshold(p_target or self.p_target) else NONTARGET

    def trial(self, enroll, test, p_target=None):
        """``(raw score, llr, decision)`` of audio: ``enroll`` one input or a list of them (averaged), ``test``
        one input (each a path, wav.scp entry or array at the model's rate)."""
        enroll = list(enroll) if isinstance(enroll, (list, tuple)) else [enroll]
        if not enroll:
            raise ValueError("no enrollment audio")
        raw = self.score(np.stack([self.embed(a) for a in enroll]), self.embed(test))
        llr = float(self.llr(raw))
        return raw, llr, self.decide(llr, p_target)

    def verify(self, enroll, test, p_target=None):
        """``(llr, decision)`` of :meth:`trial`."""
        return self.trial(enroll, test, p_target)[1:]
