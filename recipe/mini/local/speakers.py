"""Speakers of the built-in corpus: who they are (voice plan) and their utterances (synthesis).

A speaker is an espeak-ng accent + variant pair (e.g. ``en-gb-scotland+f2``) with its own base
pitch and rate; gender is the variant's. Test speakers come in groups of ``test.group`` speakers
sharing accent and gender (so every test speaker has same-accent, same-gender impostors for
mini-H); train speakers alternate genders while both pools last. Dev speakers (held out from both,
for calibration) take voices left after the train set, alternating genders, from their own random
stream, so adding them changes no train or test speaker. Train, test, dev and babble voices are
disjoint. Each utterance is one generated sentence (its own text, a small prosody jitter),
framed by silence, held within the duration limits and passed through a random channel.
"""
import dataclasses
import os

import numpy as np
import soundfile as sf

from recipe.mini.local.common import rng_for, write_wav
from recipe.mini.local.espeak import synthesize
from recipe.mini.local.sentences import make_sentence
from recipe.mini.local.signals import apply_channel, uniform

GENDERS = {"female": "f", "male": "m"}  # config key -> Kaldi spk2gender value


@dataclasses.dataclass(frozen=True)
class Speaker:
    spk: str
    accent: str
    variant: str
    gender: str  # "f" | "m"
    pitch: int  # espeak-ng -p
    rate: int  # espeak-ng -s (words per minute)

    @property
    def voice(self):
        return f"{self.accent}+{self.variant}"


def _pools(rng, accents, variants_by_gender):
    """{gender: [(accent, variant), ...]} in a seeded random order."""
    pools = {}
    for key, gender in GENDERS.items():
        pairs = [(a, v) for a in accents for v in variants_by_gender.get(key, [])]
        pools[gender] = [pairs[i] for i in rng.permutation(len(pairs))]
    return pools


def _speaker(rng, spk, pair, gender, voices):
    lo_p, hi_p = voices["pitch"]
    lo_r, hi_r = voices["rate"]
    return Speaker(spk, pair[0], pair[1], gender, int(rng.integers(lo_p, hi_p + 1)), int(rng.integers(lo_r, hi_r + 1)))


def plan_speakers(cfg):
    """(train, test, babble, dev) lists of :class:`Speaker` for the config (dev empty without a ``dev``
    entry); ValueError if the voice lists cannot supply that many distinct accent+variant pairs."""
    voices, rng = cfg["voices"], rng_for(cfg["seed"], "speakers")
    n_train, n_test, group = cfg["train"]["speakers"], cfg["test"]["speakers"], cfg["test"]["group"]
    if group < 2 or n_test % group:
        raise ValueError(f"test.speakers ({n_test}) must be a multiple of test.group ({group}), group >= 2")
    pools = _pools(rng, voices["accents"], voices)

    test, used = [], set()
    groups = [(a, g) for a in voices["accents"] for g in ("f", "m")]
    groups = [groups[i] for i in rng.permutation(len(groups))]
    groups.sort(key=lambda ag: ag[1])  # stable: random accent order within each gender ...
    order = [x for pair in zip(groups[: len(groups) // 2], groups[len(groups) // 2:]) for x in pair]  # ... f, m, f, m
    for accent, gender in order:
        members = [p for p in pools[gender] if p[0] == accent][:group]
        if len(test) == n_test or len(members) < group:
            continue
        for pair in members:
            test.append(_speaker(rng, f"te{len(test) + 1:04d}", pair, gender, voices))
            used.add(pair)
    if len(test) < n_test:
        raise ValueError(f"only {len(test)} test speakers possible in accent+gender groups of {group}; asked {n_test}")

    train, free = [], {g: [p for p in pools[g] if p not in used] for g in pools}
    while len(train) < n_train and (free["f"] or free["m"]):
        gender = "f" if (len(train) % 2 == 0 and free["f"]) or not free["m"] else "m"
        train.append(_speaker(rng, f"tr{len(train) + 1:04d}", free[gender].pop(0), gender, voices))
    if len(train) < n_train:
        raise ValueError(f"only {len(train)} train speakers left after the test set; asked {n_train} (add voices)")

    babble_pools = _pools(rng, voices["accents"], voices["babble"])
    pairs = [(p, g) for mf in zip(babble_pools["f"], babble_pools["m"]) for p, g in zip(mf, ("f", "m"))]
    n_babble = cfg["musan"]["speech"]
    if n_babble > len(pairs):
        raise ValueError(f"musan.speech asks {n_babble} babble voices; the babble variants give {len(pairs)}")
    babble = [_speaker(rng, f"speech-librivox-{i:04d}", p, g, voices) for i, (p, g) in enumerate(pairs[:n_babble])]

    dev, dev_rng, n_dev = [], rng_for(cfg["seed"], "dev-speakers"), cfg.get("dev", {}).get("speakers", 0)
    while len(dev) < n_dev and (free["f"] or free["m"]):
        gender = "f" if (len(dev) % 2 == 0 and free["f"]) or not free["m"] else "m"
        dev.append(_speaker(dev_rng, f"dv{len(dev) + 1:04d}", free[gender].pop(0), gender, voices))
    if len(dev) < n_dev:
        raise ValueError(f"only {len(dev)} dev speakers left after the train and test sets; asked {n_dev} (add voices)")
    return train, test, babble, dev


def utt_ids(speaker, num):
    """Utterance ids ``<spk>-NNNN`` (prefixed by the speaker, fixed width: C order agrees)."""
    return [f"{speaker.spk}-{i:04d}" for i in range(1, num + 1)]


def wav_path(corpus_dir, utt):
    return os.path.join(corpus_dir, "wav", utt.split("-")[0], f"{utt}.wav")


def sentence_for(cfg, speaker, rng, speech_s):
    """(text, rate_scale, pitch_scale) of about ``speech_s`` seconds for this speaker."""
    voices = cfg["voices"]
    rate_scale = 1.0 + rng.uniform(-voices["rate_jitter"], voices["rate_jitter"])
    pitch_scale = 1.0 + rng.uniform(-voices["pitch_jitter"], voices["pitch_jitter"])
    words = max(3, round(speech_s * voices["words_per_s_per_wpm"] * speaker.rate * rate_scale))
    return make_sentence(rng, words), rate_scale, pitch_scale


def frame_utterance(rng, speech, sr, utterance):
    """Add random edge silence and hold the length within ``utterance["duration_s"]``: speech too
    long is cut (20 ms fade-out), too short is padded with trailing silence. ``[N] -> [M]``."""
    lead, trail = (int(uniform(rng, utterance["edge_silence_s"]) * sr) for _ in range(2))
    shortest, longest = (int(round(d * sr)) for d in utterance["duration_s"])
    if lead + len(speech) + trail > longest:
        speech = speech[: longest - lead - trail].copy()
        fade = int(0.02 * sr)
        speech[-fade:] *= np.linspace(1.0, 0.0, fade)
    wave = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    return np.pad(wave, (0, max(0, shortest - len(wave))))


def build_speaker(cfg, corpus_dir, speaker, num_utts):
    """Synthesise the missing utterances of ``speaker``; return {utt: num_samples}.

    The whole batch is always synthesised (one espeak-ng call) so a re-run after an interruption
    writes exactly the audio an uninterrupted run would have written.
    """
    sr, utts = cfg["sample_rate"], utt_ids(speaker, num_utts)
    missing = [u for u in utts if not os.path.exists(wav_path(corpus_dir, u))]
    if missing:
        rngs = {u: rng_for(cfg["seed"], "utt", u) for u in utts}
        sentences = [sentence_for(cfg, speaker, rngs[u], uniform(rngs[u], cfg["utterance"]["speech_s"])) for u in utts]
        waves = synthesize(speaker.voice, speaker.pitch, speaker.rate, sentences, sr)
        for utt, speech in zip(utts, waves):
            if utt in missing:
                wave = frame_utterance(rngs[utt], speech, sr, cfg["utterance"])
                write_wav(wav_path(corpus_dir, utt), apply_channel(rngs[utt], wave, sr, cfg["channel"]), sr)
    return {u: sf.info(wav_path(corpus_dir, u)).frames for u in utts}
