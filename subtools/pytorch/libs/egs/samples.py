"""Chunk sampling for x-vector egs, as ASV-subtools ``ChunkSamples`` (``get_chunk_egs.py`` defaults).

Semantics (checked against ASV-subtools ``libs/egs/samples.py``):

* **Sequential chunks of one utterance** of ``T`` frames, chunk ``C``, overlap ``o``: the hop is
  ``C - int(o * C)``; chunks start at 0, hop, 2·hop, ... while ``start + C <= T``; then, unless
  ``drop_last``, one extra chunk ``[T - C, T - 1]`` is added when the tail left over is longer than the
  overlap (``next_start + int(o*C) < T``). Utterances shorter than ``C`` give no chunk.
* **Speaker balance**: every speaker gets the same number of chunks, ASV-subtools ``--chunk-num``:
  ``-1`` (default) ``int(N // S * scale)`` with ``N`` sequential chunks and ``S`` speakers in the
  training part, those whose utterances are all shorter than the chunk counted too (they get no chunk;
  launcher stage 1 removes such utterances first); ``0`` the largest per-speaker count; ``k > 0`` exactly k. A speaker with more
  sequential chunks keeps a random subset (without replacement); a speaker with fewer keeps all and is
  topped up with chunks at uniformly random start positions in its utterances (drawn with replacement).
* **Validation** (``every_utt``): ``k`` chunks at uniformly random start positions per utterance.

Positions are 0-based inclusive ``[start, end]`` frame indices. All randomness comes from one
``numpy.random.Generator`` so egs are a function of the seed.
"""
import logging

logger = logging.getLogger(__name__)


def sequential_chunks(num_frames, chunk_size, overlap, drop_last=False):
    """``[(start, end), ...]`` of one utterance (see module docstring)."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if num_frames < chunk_size:
        return []
    overlap_size = int(overlap * chunk_size)
    chunks, start = [], 0
    while start + chunk_size <= num_frames:
        chunks.append((start, start + chunk_size - 1))
        start += chunk_size - overlap_size
    if not drop_last and start + overlap_size < num_frames:
        chunks.append((num_frames - chunk_size, num_frames - 1))
    return chunks


def _random_chunk(utt, dataset, chunk_size, rng):
    start = int(rng.integers(0, dataset.utt2num_frames[utt] - chunk_size + 1))
    return utt, start, start + chunk_size - 1


def speaker_balanced_chunks(dataset, chunk_size, overlap, scale, rng, drop_last=False, chunk_num=-1):
    """Training chunks ``[(utt, start, end), ...]`` grouped by speaker (C order), see module docstring."""
    spk2chunks = {}
    for spk, utts in dataset.spk2utt.items():
        chunks = [(u, s, e) for u in utts
                  for s, e in sequential_chunks(dataset.utt2num_frames[u], chunk_size, overlap, drop_last)]
        if chunks:
            spk2chunks[spk] = chunks
    short = [u for u, n in dataset.utt2num_frames.items() if n < chunk_size]
    if short:
        logger.warning("%d utterances shorter than the chunk size %d give no chunk (e.g. %s)",
                       len(short), chunk_size, short[0])
    if not spk2chunks:
        raise ValueError(f"no utterance has >= {chunk_size} frames: cannot make chunk egs")
    total = sum(len(c) for c in spk2chunks.values())
    if chunk_num > 0:
        per_spk = int(chunk_num)
    elif chunk_num == 0:
        per_spk = max(len(c) for c in spk2chunks.values())
    else:
        per_spk = int(total // len(dataset.spk2utt) * scale)
    samples = []
    for spk, chunks in spk2chunks.items():
        if len(chunks) >= per_spk:
            keep = sorted(rng.choice(len(chunks), size=per_spk, replace=False))
            samples.extend(chunks[i] for i in keep)
        else:
            samples.extend(chunks)
            long_utts = [u for u in dataset.spk2utt[spk] if dataset.utt2num_frames[u] >= chunk_size]
            for i in rng.integers(0, len(long_utts), size=per_spk - len(chunks)):
                samples.append(_random_chunk(long_utts[i], dataset, chunk_size, rng))
    return samples


def random_chunks_per_utt(dataset, chunk_size, chunks_per_utt, rng):
    """Validation chunks: ``chunks_per_utt`` random chunks of every utterance with >= chunk_size frames."""
    return [_random_chunk(u, dataset, chunk_size, rng)
            for u in dataset.utt2spk if dataset.utt2num_frames[u] >= chunk_size
            for _ in range(chunks_per_utt)]
