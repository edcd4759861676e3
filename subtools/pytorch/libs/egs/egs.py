"""Chunk egs on disk (CSV + info/) and the Dataset / DataLoaders that read them.

Layout of an egs dir (as ASV-subtools ``get_chunk_egs.py``)::

    train.egs.csv  valid.egs.csv   header "eg-id ark-path start-position end-position class-label",
                                   positions 0-based inclusive frame indices, space separated
    info/feat_dim info/num_targets info/num_frames   (num_frames = total frames of the training part)
    spk2int                        speaker -> class label
    .done                          completion marker (the generation options as JSON), written last

The dataset reads a chunk by seeking into the ark (``support.kaldi_io.read_rows``), never the whole
matrix (except for compressed arks, see there). Item ``i`` of epoch ``e`` is augmented with a
``numpy`` generator seeded by ``(seed, e, i)``, so batches are a function of (seed, epoch) whatever the
number of workers, which makes resumed training exact.
"""
import array
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from subtools.kaldi import fingerprint
from subtools.kaldi.fileio import write_lines, write_table
from subtools.pytorch.libs.egs.kaldi_dataset import KaldiDataset
from subtools.pytorch.libs.egs.samples import random_chunks_per_utt, speaker_balanced_chunks
from subtools.pytorch.libs.egs.specaug import SpecAugment
from subtools.pytorch.libs.support import markers
from subtools.pytorch.libs.support.kaldi_io import parse_rxspec, read_rows

HEADER = "eg-id ark-path start-position end-position class-label"


def _egs_lines(samples, dataset):
    """CSV lines (header first) of ``samples`` [(utt, start, end)], generated one at a time."""
    counters = {}
    yield HEADER
    for utt, start, end in samples:
        n = counters.get(utt, 0)
        counters[utt] = n + 1
        yield f"{utt}-{n} {dataset.feats_scp[utt]} {start} {end} {dataset.spk2int[dataset.utt2spk[utt]]}"


def egs_options(data_dir, chunk_size=200, overlap=0.1, scale=1.5, valid_spks=1024, valid_chunks_per_utt=2,
                seed=1024, drop_last=False, chunk_num=-1):
    """The options recorded in the ``.done`` marker (compare with ``markers.is_complete``), with the
    fingerprint of the data dir (its tables, and the identities of the arks feats.scp names): egs made
    from other features are never reused, and a training resumed on changed egs is refused."""
    return dict(data_dir=os.path.abspath(data_dir), chunk_size=chunk_size, overlap=overlap, scale=scale,
                valid_spks=valid_spks, valid_chunks_per_utt=valid_chunks_per_utt, seed=seed,
                drop_last=drop_last, chunk_num=chunk_num,
                inputs=fingerprint.data_dir_fingerprint(data_dir, follow=("feats.scp",)))


def make_chunk_egs(data_dir, egs_dir, chunk_size=200, overlap=0.1, scale=1.5, valid_spks=1024,
                   valid_chunks_per_utt=2, seed=1024, drop_last=False, chunk_num=-1):
    """Write the egs dir of ``data_dir`` (see module docstring and ``samples.py``; ``chunk_num`` as
    ASV-subtools ``--chunk-num``). Returns the options dict (the marker)."""
    options = egs_options(data_dir, chunk_size, overlap, scale, valid_spks, valid_chunks_per_utt, seed,
                          drop_last, chunk_num)
    marker = os.path.join(egs_dir, ".done")
    markers.clear(marker)
    rng = np.random.default_rng(seed)
    dataset = KaldiDataset.load(data_dir)
    spaced = next((u for u, entry in dataset.feats_scp.items() if any(c.isspace() for c in entry)), None)
    if spaced is not None:
        raise ValueError(f"{data_dir}/feats.scp: the ark path of utterance {spaced} ('{dataset.feats_scp[spaced]}') "
                         "contains whitespace, which the space-separated egs CSV (ASV-subtools format) cannot "
                         "hold: keep data_root and the feature arks on a path without spaces")
    train, valid = dataset.split_valid(valid_spks, rng)
    train_samples = speaker_balanced_chunks(train, chunk_size, overlap, scale, rng, drop_last, chunk_num)
    valid_samples = random_chunks_per_utt(valid, chunk_size, valid_chunks_per_utt, rng)
    write_lines(os.path.join(egs_dir, "train.egs.csv"), _egs_lines(train_samples, train))
    write_lines(os.path.join(egs_dir, "valid.egs.csv"), _egs_lines(valid_samples, valid))
    info = os.path.join(egs_dir, "info")
    write_lines(os.path.join(info, "feat_dim"), [str(dataset.feat_dim)])
    write_lines(os.path.join(info, "num_targets"), [str(dataset.num_spks)])
    write_lines(os.path.join(info, "num_frames"), [str(train.num_frames)])
    write_table(os.path.join(egs_dir, "spk2int"), dataset.spk2int)
    markers.mark_complete(marker, options)
    return options


def read_info(egs_dir):
    """``{"feat_dim": int, "num_targets": int, "num_frames": int}`` of an egs dir."""
    info = {}
    for name in ("feat_dim", "num_targets", "num_frames"):
        with open(os.path.join(egs_dir, "info", name)) as f:
            info[name] = int(f.read().split()[0])
    return info


class ChunkEgs(Dataset):
    """Items ``(feats: float32 [F, T], label: int)`` of an egs CSV.

    The CSV's columns are held as numpy arrays (ark file index, byte offset, start, end, label: about
    36 bytes per eg), not as one Python string per eg: a VoxCeleb2 egs list has over 10 million egs,
    and DataLoader workers forked from the parent would otherwise copy every string they touch.
    """

    def __init__(self, csv_path, specaug=None, seed=0):
        self.ark_paths, columns = _read_egs_csv(csv_path)
        self.ark_ids, self.offsets, self.starts, self.ends, self.labels = columns
        self.specaug = SpecAugment(**specaug) if specaug else None
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch):
        """Epoch used in the augmentation seed (set before creating the epoch's iterator)."""
        self.epoch = epoch

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        spec = f"{self.ark_paths[self.ark_ids[index]]}:{self.offsets[index]}"
        feats = read_rows(spec, int(self.starts[index]), int(self.ends[index]))
        if self.specaug is not None:
            feats = self.specaug(feats.copy(), np.random.default_rng([self.seed, self.epoch, index]))
        return torch.from_numpy(np.ascontiguousarray(feats.T)), int(self.labels[index])


def _read_egs_csv(csv_path):
    """``(ark_paths, (ark_ids int32, offsets int64, starts int64, ends int64, labels int64))`` of an egs
    CSV: ``ark_paths`` lists each ark file once; ValueError naming the file and line of a bad row."""
    ark_index = {}
    columns = [array.array("i"), array.array("q"), array.array("q"), array.array("q"), array.array("q")]
    add_id, add_offset, add_start, add_end, add_label = (column.append for column in columns)
    with open(csv_path) as f:
        header = f.readline().split()
        if header != HEADER.split():
            raise ValueError(f"{csv_path}: bad header {header}, expected '{HEADER}'")
        last_spec = None
        for lineno, line in enumerate(f, 2):
            try:
                _, spec, start, end, label = line.split()
                if spec != last_spec:  # consecutive egs mostly share an utterance
                    path, offset = parse_rxspec(spec)
                    ark_id, last_spec = ark_index.setdefault(path, len(ark_index)), spec
                add_start(int(start))
                add_end(int(end))
                add_label(int(label))
            except ValueError as e:
                raise ValueError(f"{csv_path}:{lineno}: expected 'eg-id ark-path:offset start end label', "
                                 f"got '{line.strip()}' ({e})") from None
            add_id(ark_id)
            add_offset(offset)
    return list(ark_index), tuple(np.frombuffer(column, dtype=column.typecode) for column in columns)


def make_train_loader(dataset, batch_size, seed, num_workers=0, prefetch_factor=2, rank=0, world_size=1,
                      pin_memory=False):
    """Shuffled loader over this rank's share; call ``loader.sampler.set_epoch(e)`` and
    ``dataset.set_epoch(e)`` before each epoch. Order = f(seed, epoch) (DistributedSampler), last
    incomplete batch dropped. ``batch_size`` is per process."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=True, pin_memory=pin_memory, **extra)


def make_valid_loader(dataset, batch_size, num_workers=0):
    """Sequential loader over the whole validation set. It has its own generator so that running it (on
    rank 0 only) does not advance the global torch RNG."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator())
