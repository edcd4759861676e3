"""MUSAN- and RIRS_NOISES-shaped augmentation sets for the built-in corpus, in the real layouts.

Under CORPUS_DIR:
- ``musan/noise/free-sound/noise-free-sound-NNNN.wav`` (synthetic noises, :data:`NOISE_KINDS`),
  ``musan/music/fma/music-fma-NNNN.wav`` (synthetic chord/rhythm music),
  ``musan/speech/librivox/speech-librivox-NNNN.wav`` (espeak-ng speech from the babble voices,
  which no train/test speaker uses); each folder has an ``ANNOTATIONS`` file: music
  ``<id> <genre> <vocals Y|N> <musician>`` (the columns Kaldi's ``make_musan.py`` reads), speech
  ``<id> <gender> <language>``, noise ``<id> <source>``.
- ``RIRS_NOISES/simulated_rirs/{smallroom,mediumroom}/RoomNNN/RoomNNN-NNNNN.wav`` with ``rir_list``
  (``--rir-id small-Room001-00001 --room-id small-Room001 RIRS_NOISES/simulated_rirs/...wav``) and
  ``room_info`` (``Room001 x y z mic_x mic_y mic_z absorption``, metres, as the real set);
  the RT60 of every RIR of a room is Sabine's for that room (recomputable from ``room_info``).
- ``RIRS_NOISES/real_rirs_isotropic_noises/`` with a few RIRs and isotropic noises, ``rir_list``
  and ``noise_list`` (``--noise-id .. --noise-type isotropic --bg-fg-type background
  --room-linkage <room-id> <path>``).
List paths are relative to CORPUS_DIR, as the real lists are relative to RIRS_NOISES' parent.
"""
import dataclasses
import os

import numpy as np

from recipe.mini.local.common import rng_for, write_wav
from recipe.mini.local.espeak import synthesize
from recipe.mini.local.signals import NOISE_KINDS, coloured_noise, sabine_rt60, synth_music, synth_noise, synth_rir, uniform
from recipe.mini.local.speakers import sentence_for
from subtools.kaldi.fileio import write_lines

SIM = "RIRS_NOISES/simulated_rirs"
REAL = "RIRS_NOISES/real_rirs_isotropic_noises"
ROOM_TYPES = {"smallroom": "small", "mediumroom": "medium"}  # folder -> id prefix
MUSAN_DIRS = {"noise": "noise/free-sound", "music": "music/fma", "speech": "speech/librivox"}
MUSAN_PREFIX = {"noise": "noise-free-sound", "music": "music-fma", "speech": "speech-librivox"}


def musan_relpath(kind, index):
    """``musan/<kind>/<source>/<kind>-<source>-NNNN.wav`` relative to CORPUS_DIR."""
    return f"musan/{MUSAN_DIRS[kind]}/{MUSAN_PREFIX[kind]}-{index:04d}.wav"


def _level(rng, wave, lo_db=-20.0, hi_db=-6.0):
    """Scale ``wave`` to a random peak level in [lo_db, hi_db] dBFS."""
    return wave * 10.0 ** (rng.uniform(lo_db, hi_db) / 20.0) / np.max(np.abs(wave))


def build_noise(cfg, corpus_dir, index):
    path = os.path.join(corpus_dir, musan_relpath("noise", index))
    if not os.path.exists(path):
        rng, sr = rng_for(cfg["seed"], "noise", index), cfg["sample_rate"]
        wave = synth_noise(rng, NOISE_KINDS[index % len(NOISE_KINDS)], int(uniform(rng, cfg["musan"]["noise_s"]) * sr), sr)
        write_wav(path, _level(rng, wave), sr)


def build_music(cfg, corpus_dir, index):
    path = os.path.join(corpus_dir, musan_relpath("music", index))
    if not os.path.exists(path):
        rng, sr = rng_for(cfg["seed"], "music", index), cfg["sample_rate"]
        write_wav(path, _level(rng, synth_music(rng, int(uniform(rng, cfg["musan"]["music_s"]) * sr), sr)), sr)


def build_babble(cfg, corpus_dir, index, speaker):
    """One MUSAN-like speech recording: sentences of one babble voice separated by short pauses,
    over a -65 dBFS pink noise floor (no digital silence)."""
    path = os.path.join(corpus_dir, musan_relpath("speech", index))
    if not os.path.exists(path):
        rng, sr = rng_for(cfg["seed"], "speech", index), cfg["sample_rate"]
        total = uniform(rng, cfg["musan"]["speech_s"])
        sentences = [sentence_for(cfg, speaker, rng, 5.0) for _ in range(int(np.ceil(total / 5.0)))]
        pieces = []
        for speech in synthesize(speaker.voice, speaker.pitch, speaker.rate, sentences, sr):
            pieces += [speech, np.zeros(int(rng.uniform(0.2, 0.6) * sr))]
        speech = _level(rng, np.concatenate(pieces)[: int(total * sr)], -10.0, -3.0)
        floor = 10.0 ** (-65.0 / 20.0) * coloured_noise(rng, len(speech), sr, 1.0)  # recording noise floor
        write_wav(path, speech + floor, sr)


@dataclasses.dataclass(frozen=True)
class Room:
    """A shoe-box room of a room type; dimensions and absorption rounded as in ``room_info``."""
    room_type: str  # "smallroom" | "mediumroom"
    index: int
    size: tuple  # (x, y, z) m
    mic: tuple  # (x, y, z) m
    absorption: float

    @property
    def name(self):
        return f"Room{self.index:03d}"

    @property
    def rt60(self):
        return sabine_rt60(self.size, self.absorption)

    def info_line(self):
        return " ".join([self.name] + [f"{v:3.2f}" for v in (*self.size, *self.mic, self.absorption)])


def plan_rooms(cfg, room_type, count):
    """``count`` rooms of ``room_type`` (bounds from ``cfg["rirs"][room_type]``)."""
    bounds, rooms = cfg["rirs"][room_type], []
    for index in range(1, count + 1):
        rng = rng_for(cfg["seed"], room_type, index)
        size = tuple(round(uniform(rng, bounds[k]), 2) for k in ("size_xy", "size_xy", "size_z"))
        mic = tuple(round(float(rng.uniform(0.0, s)), 2) for s in size)
        rooms.append(Room(room_type, index, size, mic, round(uniform(rng, bounds["absorption"]), 2)))
    return rooms


def rir_relpath(room, rir_index):
    return f"{SIM}/{room.room_type}/{room.name}/{room.name}-{rir_index:05d}.wav"


def _source_distance(rng, room, max_distance):
    """Distance (m) from the microphone to a random source position inside the room, drawn as
    Kaldi's simulation does (uniform in a sphere of radius ``max_distance``, redrawn until inside)."""
    mic, size = np.array(room.mic), np.array(room.size)
    while True:
        direction = rng.standard_normal(3)
        radius = max(0.1, max_distance * rng.random() ** (1.0 / 3.0))
        source = mic + radius * direction / np.linalg.norm(direction)
        if np.all(source >= 0.0) and np.all(source <= size):
            return radius


def build_room(cfg, corpus_dir, room, num_rirs):
    """Write the missing RIRs of one simulated room."""
    sr = cfg["sample_rate"]
    for rir_index in range(1, num_rirs + 1):
        path = os.path.join(corpus_dir, rir_relpath(room, rir_index))
        if not os.path.exists(path):
            rng = rng_for(cfg["seed"], room.room_type, room.index, rir_index)
            distance = _source_distance(rng, room, cfg["rirs"]["max_distance"])
            write_wav(path, synth_rir(rng, sr, room.rt60, distance, float(np.prod(room.size))), sr)


def real_names(index):
    """(rir id, room id, noise id) of the ``index``-th 'real' RIR + isotropic noise pair."""
    return f"mini_type1_rir_room{index}", f"mini_type1_room{index}", f"mini_type1_noise_room{index}_1"


def build_real(cfg, corpus_dir, index):
    """One RIR of a medium room and a 10 s isotropic (stationary coloured) noise recorded 'there'."""
    rir_id, _, noise_id = real_names(index)
    sr, rng = cfg["sample_rate"], rng_for(cfg["seed"], "real", index)
    room = plan_rooms({**cfg, "seed": cfg["seed"] + index}, "mediumroom", 1)[0]
    rir = synth_rir(rng, sr, room.rt60, _source_distance(rng, room, cfg["rirs"]["max_distance"]), float(np.prod(room.size)))
    noise = _level(rng, synth_noise(rng, "stationary", 10 * sr, sr))
    for name, wave in ((rir_id, rir), (noise_id, noise)):
        path = os.path.join(corpus_dir, REAL, f"{name}.wav")
        if not os.path.exists(path):
            write_wav(path, wave, sr)


def write_lists(cfg, corpus_dir, rooms, babble):
    """Write every list file (ANNOTATIONS, rir_list, room_info, noise_list), atomically."""
    counts = cfg["musan"]
    musan = os.path.join(corpus_dir, "musan")
    write_lines(os.path.join(musan, MUSAN_DIRS["noise"], "ANNOTATIONS"),
                [f"{MUSAN_PREFIX['noise']}-{i:04d} synthetic-{NOISE_KINDS[i % len(NOISE_KINDS)]}" for i in range(counts["noise"])])
    write_lines(os.path.join(musan, MUSAN_DIRS["music"], "ANNOTATIONS"),
                [f"{MUSAN_PREFIX['music']}-{i:04d} Synthetic N mini-synth" for i in range(counts["music"])])
    write_lines(os.path.join(musan, MUSAN_DIRS["speech"], "ANNOTATIONS"),
                [f"{s.spk} {'female' if s.gender == 'f' else 'male'} english" for s in babble])
    for room_type, prefix in ROOM_TYPES.items():
        typed = [r for r in rooms if r.room_type == room_type]
        folder = os.path.join(corpus_dir, SIM, room_type)
        write_lines(os.path.join(folder, "room_info"), [r.info_line() for r in typed])
        write_lines(os.path.join(folder, "rir_list"),
                    [f"--rir-id {prefix}-{r.name}-{j:05d} --room-id {prefix}-{r.name} {rir_relpath(r, j)}"
                     for r in typed for j in range(1, cfg["rirs"]["rirs_per_room"] + 1)])
    names = [real_names(i) for i in range(1, cfg["rirs"]["real"] + 1)]
    write_lines(os.path.join(corpus_dir, REAL, "rir_list"),
                [f"--rir-id {rir} --room-id {room} {REAL}/{rir}.wav" for rir, room, _ in names])
    write_lines(os.path.join(corpus_dir, REAL, "noise_list"),
                [f"--noise-id {noise} --noise-type isotropic --bg-fg-type background --room-linkage {room} {REAL}/{noise}.wav"
                 for _, room, noise in names])
