"""Egs: chunking against hand-computed positions, CSV/info, validation split, chunk reads by seek."""
import os

import kaldiio
import numpy as np
import pytest

from subtools.kaldi.fileio import read_table, write_table
from subtools.pytorch.libs.egs import egs as egs_lib
from subtools.pytorch.libs.egs.egs import ChunkEgs, HEADER, make_chunk_egs, read_info
from subtools.pytorch.libs.egs.samples import sequential_chunks
from subtools.pytorch.libs.support import kaldi_io


def write_dir(path, spk_lengths, dim=5, seed=0):
    """Data dir with utterances '<spk>-<i>' of the given lengths: {spk: [T, ...]}."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    mats, utt2spk = {}, {}
    for spk, lengths in spk_lengths.items():
        for i, n in enumerate(lengths):
            mats[f"{spk}-{i}"] = rng.standard_normal((n, dim)).astype(np.float32)
            utt2spk[f"{spk}-{i}"] = spk
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for utt in sorted(mats):
            w(utt, mats[utt])
    write_table(f"{path}/utt2spk", utt2spk)
    write_table(f"{path}/utt2num_frames", {u: len(m) for u, m in mats.items()})
    return mats


def read_csv(path):
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == HEADER
    return [line.split() for line in lines[1:]]


@pytest.mark.parametrize("num_frames, expected", [
    (450, [(0, 199), (180, 379), (250, 449)]),   # hop 180; tail 360+20 < 450 -> [250, 449]
    (390, [(0, 199), (180, 379), (190, 389)]),
    (380, [(0, 199), (180, 379)]),               # tail 360+20 == 380: no extra chunk
    (200, [(0, 199)]),
    (199, []),
])
def test_sequential_chunks_hand_computed(num_frames, expected):
    assert sequential_chunks(num_frames, 200, 0.1) == expected


def test_speaker_balanced_egs_csv_and_info(tmp_path):
    data = tmp_path / "data"
    write_dir(str(data), {"A": [450, 380, 390, 200], "B": [200], "C": [150]})
    make_chunk_egs(str(data), str(tmp_path / "egs"), chunk_size=200, overlap=0.1, scale=1.5, valid_spks=0)
    rows = read_csv(tmp_path / "egs" / "train.egs.csv")
    scp = read_table(data / "feats.scp")
    # ASV-subtools ChunkSamples: 3 + 2 + 3 + 1 + 1 = 10 sequential chunks, 3 speakers (C, with none,
    # counts) -> int(10 // 3 * 1.5) = 4 per speaker (10 / 3 * 1.5 would give 5; 10 // 2 * 1.5, 7).
    a = [r for r in rows if r[0].startswith("A-")]
    b = [r for r in rows if r[0].startswith("B-")]
    assert len(a) == 4 and len(b) == 4 and len(rows) == 8
    seq_a = {("A-0", s, e) for s, e in [(0, 199), (180, 379), (250, 449)]} | \
            {("A-1", s, e) for s, e in [(0, 199), (180, 379)]} | \
            {("A-2", s, e) for s, e in [(0, 199), (180, 379), (190, 389)]} | {("A-3", 0, 199)}
    got_a = {(r[0].rsplit("-", 1)[0], int(r[2]), int(r[3])) for r in a}
    assert len(got_a) == 4 and got_a <= seq_a                       # a subset, no repeats
    assert all((int(r[2]), int(r[3])) == (0, 199) for r in b)          # topped up inside a 200-frame utt
    assert sorted(r[0] for r in b) == ["B-0-0", "B-0-1", "B-0-2", "B-0-3"]
    assert all(r[1] == scp[r[0].rsplit("-", 1)[0]] for r in rows)
    assert {r[4] for r in a} == {"0"} and {r[4] for r in b} == {"1"}   # C-sorted speakers -> 0, 1, 2
    assert read_info(str(tmp_path / "egs")) == {"feat_dim": 5, "num_targets": 3, "num_frames": 1770}
    assert read_table(tmp_path / "egs" / "spk2int") == {"A": "0", "B": "1", "C": "2"}
    assert read_csv(tmp_path / "egs" / "valid.egs.csv") == []
    make_chunk_egs(str(data), str(tmp_path / "egs0"), chunk_size=200, valid_spks=0, chunk_num=0)
    rows = read_csv(tmp_path / "egs0" / "train.egs.csv")                 # 0: the largest count (9)
    assert sum(r[4] == "0" for r in rows) == 9 and sum(r[4] == "1" for r in rows) == 9
    make_chunk_egs(str(data), str(tmp_path / "egs2"), chunk_size=200, valid_spks=0, chunk_num=2)
    assert len(read_csv(tmp_path / "egs2" / "train.egs.csv")) == 4


def test_valid_split_one_utt_per_speaker(tmp_path):
    data = tmp_path / "data"
    write_dir(str(data), {f"S{i}": [300, 320, 340] for i in range(5)} | {"T": [400]})
    make_chunk_egs(str(data), str(tmp_path / "egs"), chunk_size=100, valid_spks=3, valid_chunks_per_utt=2,
                   seed=7)
    valid = read_csv(tmp_path / "egs" / "valid.egs.csv")
    train = read_csv(tmp_path / "egs" / "train.egs.csv")
    valid_utts = {r[0].rsplit("-", 1)[0] for r in valid}
    assert len(valid) == 6 and len(valid_utts) == 3
    assert len({u.split("-")[0] for u in valid_utts}) == 3             # one utterance per speaker
    assert "T" not in {u.split("-")[0] for u in valid_utts}            # single-utterance speaker kept
    assert not valid_utts & {r[0].rsplit("-", 1)[0] for r in train}
    spk2int = read_table(tmp_path / "egs" / "spk2int")
    for r in valid:
        assert int(r[3]) - int(r[2]) == 99 and r[4] == spk2int[r[0].split("-")[0]]
    # Same seed -> same egs.
    make_chunk_egs(str(data), str(tmp_path / "egs2"), chunk_size=100, valid_spks=3, seed=7)
    assert read_csv(tmp_path / "egs2" / "valid.egs.csv") == valid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_rows_by_seek_equals_slice(tmp_path, dtype, monkeypatch):
    rng = np.random.default_rng(1)
    mats = {f"u{i}": rng.standard_normal((50 + i, 7)).astype(dtype) for i in range(3)}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/m.ark,{tmp_path}/m.scp") as w:
        for k, m in mats.items():
            w(k, m)
    scp = read_table(tmp_path / "m.scp")
    full = {k: kaldiio.load_mat(v) for k, v in scp.items()}
    monkeypatch.setattr(kaldi_io.kaldiio, "load_mat", lambda *a, **k: pytest.fail("whole-matrix load"))
    for k, spec in scp.items():
        for start, end in [(0, 0), (3, 17), (10, full[k].shape[0] - 1)]:
            got = kaldi_io.read_rows(spec, start, end)
            assert got.dtype == np.float32 and got.shape == (end - start + 1, 7)
            np.testing.assert_array_equal(got, full[k][start:end + 1].astype(np.float32))
        assert kaldi_io.read_header(spec)[1:] == full[k].shape
    with pytest.raises(ValueError, match="outside"):
        kaldi_io.read_rows(scp["u0"], 40, 50)


def test_read_rows_compressed_falls_back(tmp_path):
    mat = np.random.default_rng(2).standard_normal((40, 6)).astype(np.float32)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/c.ark,{tmp_path}/c.scp", compression_method=2) as w:
        w("u", mat)
    spec = read_table(tmp_path / "c.scp")["u"]
    np.testing.assert_array_equal(kaldi_io.read_rows(spec, 5, 9), kaldiio.load_mat(spec)[5:10])


def test_chunk_dataset_items_and_specaug(tmp_path):
    data = tmp_path / "data"
    mats = write_dir(str(data), {"A": [300, 260], "B": [280, 310]}, dim=6)
    make_chunk_egs(str(data), str(tmp_path / "egs"), chunk_size=100, valid_spks=0)
    csv = str(tmp_path / "egs" / "train.egs.csv")
    rows = read_csv(csv)
    plain = ChunkEgs(csv)
    assert sorted(plain.ark_paths) == sorted({r[1].rpartition(":")[0] for r in rows})  # each ark once
    for i in range(len(rows)):
        x, y = plain[i]
        utt, start, end = rows[i][0].rsplit("-", 1)[0], int(rows[i][2]), int(rows[i][3])
        assert x.shape == (6, 100) and y == int(rows[i][4])
        np.testing.assert_array_equal(x.numpy(), mats[utt][start:end + 1].T)
    spec = {"freq_masks": 2, "freq_width": 3, "time_masks": 1, "time_width": 30, "prob": 1.0}
    aug = ChunkEgs(csv, specaug=spec, seed=5)
    x0, _ = plain[0]
    a1, a2 = aug[0][0], aug[0][0]
    assert (a1 == a2).all()                                            # f(seed, epoch, index)
    masked = a1 == 0
    assert masked.any() and (a1[~masked] == x0[~masked]).all()
    assert masked.all(dim=1).sum() <= 6 and masked.all(dim=0).sum() <= 30
    aug.set_epoch(1)
    assert not (aug[0][0] == a1).all()
    loader = egs_lib.make_train_loader(plain, batch_size=4, seed=3)
    loader.sampler.set_epoch(0)
    order0 = [y.tolist() for _, y in loader]
    loader.sampler.set_epoch(0)
    assert [y.tolist() for _, y in loader] == order0
    assert len(order0) == len(plain) // 4


def test_chunk_dataset_bad_row_names_line(tmp_path):
    csv = tmp_path / "train.egs.csv"
    csv.write_text(egs_lib.HEADER + "\nu-0 /x.ark:15 0 99 0\nu-1 /x.ark 0 99 0\n")
    with pytest.raises(ValueError, match=r"train.egs.csv:3: .*'u-1 /x.ark 0 99 0'"):
        ChunkEgs(str(csv))
    csv.write_text(egs_lib.HEADER + "\nu-0 /x.ark:15 0 99\n")
    with pytest.raises(ValueError, match=r"train.egs.csv:2: "):
        ChunkEgs(str(csv))
