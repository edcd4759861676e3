"""Building blocks of the built-in corpus: noise colour, channel response, sentences, trials
sampling, espeak-ng batch splitting and the missing-espeak message."""
import numpy as np
import pytest
import scipy.signal

from recipe.mini.local import espeak
from recipe.mini.local.sentences import make_sentence
from recipe.mini.local.signals import channel_response, coloured_noise, synth_rir
from recipe.mini.local.trials import make_trials

SR = 16000


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_coloured_noise_spectral_slope(beta):
    x = coloured_noise(np.random.default_rng(0), 20 * SR, SR, beta)
    assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0)
    f, psd = scipy.signal.welch(x, SR, nperseg=4096)
    band = (f >= 100) & (f <= 6000)
    slope = np.polyfit(np.log10(f[band]), np.log10(psd[band]), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.1)


def test_channel_response_band_edges_are_butterworth_minus_3db():
    rng = np.random.default_rng(1)
    gains = channel_response(rng, np.array([200.0, 1000.0, 4000.0]), SR, eq_db=0.0, lowcut_hz=200.0, highcut_hz=4000.0)
    hp, lp = 1 / np.sqrt(1 + (200 / 1000) ** 8), 1 / np.sqrt(1 + (1000 / 4000) ** 8)  # closed form
    np.testing.assert_allclose(gains, [np.sqrt(0.5) / np.sqrt(1 + (200 / 4000) ** 8), hp * lp,
                                       np.sqrt(0.5) / np.sqrt(1 + (200 / 4000) ** 8)], rtol=1e-9)


def test_rir_direct_to_reverberant_ratio_follows_critical_distance():
    rt60, volume, distance = 0.5, 200.0, 3.0
    h = synth_rir(np.random.default_rng(2), SR, rt60, distance, volume)
    peak = np.argmax(np.abs(h))
    assert peak == round(distance / 343.0 * SR)
    drr = h[peak] ** 2 / np.sum(h[peak + 1:] ** 2)
    assert drr == pytest.approx((0.057 * np.sqrt(volume / rt60) / distance) ** 2, rel=1e-6)


def test_sentences_are_seeded_and_have_the_asked_length():
    a = [make_sentence(np.random.default_rng(5), n) for n in (3, 9, 17)]
    b = [make_sentence(np.random.default_rng(5), n) for n in (3, 9, 17)]
    assert a == b and [len(s.split()) for s in a] == [3, 9, 17]
    assert all(s[0].isupper() and s[-1] in ".!" for s in a)
    assert len({make_sentence(np.random.default_rng(i), 12) for i in range(50)}) == 50


def test_trials_sampling_counts_and_caps():
    utt2spk = {f"s{s}-{u}": f"s{s}" for s in range(6) for u in range(5)}
    groups = {f"s{s}": s % 2 for s in range(6)}  # s0,s2,s4 | s1,s3,s5
    trials = make_trials(utt2spk, groups, 100, np.random.default_rng(3))
    labels = [label for *_, label in trials]
    assert labels.count("target") == 50 and labels.count("nontarget") == 50  # 60 target pairs exist
    hard = make_trials(utt2spk, groups, 1000, np.random.default_rng(3), hard=True)
    # caps: all 6*C(5,2) = 60 target pairs; nontargets: 2 groups x C(3,2) speaker pairs x 25 = 150
    assert sum(label == "target" for *_, label in hard) == 60 and len(hard) == 210
    assert all(groups[utt2spk[e]] == groups[utt2spk[t]] for e, t, _ in hard)
    assert trials == sorted(trials) and all(e < t for e, t, _ in trials)


def test_espeak_batch_split_matches_single_calls():
    sentences = [("The old bridge carried a heavy wagon across the river.", 1.0, 1.0),
                 ("Clara noticed the lantern, and then she left quietly!", 1.05, 0.95),
                 ("Seven students counted the tickets at dawn.", 0.95, 1.05)]
    batch = espeak.synthesize("en-gb-scotland+f3", 40, 170, sentences, SR)
    single = [espeak.synthesize("en-gb-scotland+f3", 40, 170, [s], SR)[0] for s in sentences]
    assert len(batch) == 3
    for b, s in zip(batch, single):
        assert abs(len(b) - len(s)) < 0.05 * SR  # same sentence, same length within 50 ms


def test_missing_espeak_names_the_install_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(espeak.EspeakError, match="apt-get install -y espeak-ng"):
        espeak.require_espeak(["en"], ["m1"])


def test_unknown_voice_is_reported():
    with pytest.raises(espeak.EspeakError, match="variant 'no-such-variant'"):
        espeak.require_espeak(["en-us"], ["m1", "no-such-variant"])
