"""Kaldi data-dir operations: validate, fix, subset, split, combine, filter, remove_utt, CLI."""
import os
import subprocess
import sys

import pytest

from subtools.kaldi import data_dir as dd
from subtools.kaldi.fileio import read_table


def write(path, name, lines):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
        f.write("".join(line + "\n" for line in lines))


def make_dir(path, spk_counts, frames=None, trials=True):
    """Speakers spk0.. with the given utterance counts; ids 'spkS-uNN' (speaker-prefixed)."""
    utt2spk = {f"spk{s}-u{u:02d}": f"spk{s}" for s, n in enumerate(spk_counts) for u in range(n)}
    utts = sorted(utt2spk)
    write(path, "utt2spk", [f"{u} {utt2spk[u]}" for u in utts])
    write(path, "wav.scp", [f"{u} /audio/{u}.wav" for u in utts])
    write(path, "utt2num_frames", [f"{u} {(frames or {}).get(u, 300)}" for u in utts])
    write(path, "spk2gender", [f"spk{s} {'mf'[s % 2]}" for s in range(len(spk_counts))])
    spk2utt = dd.utt2spk_to_spk2utt(utt2spk)
    write(path, "spk2utt", [f"{s} {' '.join(us)}" for s, us in spk2utt.items()])
    if trials:
        write(os.path.join(path, "trials"), "mini-O", [f"{utts[0]} {utts[-1]} nontarget"])
    return utts


def test_c_order_sorting_and_roundtrip(tmp_path):
    utt2spk = {"b-1": "b", "B-1": "B", "a_x": "a_x", "a-x": "a"}
    assert list(dd.utt2spk_to_spk2utt(utt2spk)) == ["B", "a", "a_x", "b"]  # C order: uppercase first, '-' < '_'
    spk2utt = dd.utt2spk_to_spk2utt(utt2spk)
    assert dd.spk2utt_to_utt2spk(spk2utt) == dict(sorted(utt2spk.items()))
    with pytest.raises(ValueError, match="belongs to speakers"):
        dd.spk2utt_to_utt2spk({"a": ["x"], "b": ["x"]})


def test_load_save_and_valid_dir(tmp_path):
    src = str(tmp_path / "d")
    make_dir(src, [3, 2])
    assert dd.validate_dir(src) == []
    data = dd.DataDir.load(src)
    assert data.utt2num_frames["spk0-u00"] == 300 and data.feats_scp is None
    assert data.spk2utt["spk1"] == ["spk1-u00", "spk1-u01"]
    data.save(str(tmp_path / "copy"))
    assert dd.validate_dir(str(tmp_path / "copy")) == []
    assert os.path.isfile(tmp_path / "copy" / "trials" / "mini-O")


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda p: write(p, "wav.scp", ["spk0-u01 x", "spk0-u00 y"]), "not in sorted (C locale) order"),
        (lambda p: write(p, "utt2num_frames", ["spk0-u00 1", "spk0-u00 2"]), "duplicate key 'spk0-u00'"),
        (lambda p: write(p, "wav.scp", ["spk0-u00 x"]), "wav.scp: 1 utterances of utt2spk missing: spk0-u01"),
        (lambda p: write(p, "spk2utt", ["spk0 spk0-u00"]), "spk2utt: inconsistent with utt2spk"),
        (lambda p: write(p, "spk2gender", ["spk0 m", "spk9 f"]), "spk2gender: 1 speakers not in utt2spk: spk9"),
        (lambda p: os.remove(os.path.join(p, "utt2spk")), "utt2spk: missing"),
        (lambda p: write(p, "utt2num_frames", ["spk0-u00 0", "spk0-u01 5"]), "non-positive"),
    ],
)
def test_validate_reports_problems(tmp_path, mutate, expected):
    path = str(tmp_path / "d")
    make_dir(path, [2])
    mutate(path)
    problems = dd.validate_dir(path)
    assert any(expected in p for p in problems), problems


def test_validate_speaker_prefix_convention(tmp_path):
    path = str(tmp_path / "d")
    write(path, "utt2spk", ["a1 zed", "b1 amy"])
    write(path, "wav.scp", ["a1 x", "b1 y"])
    write(path, "spk2utt", ["amy b1", "zed a1"])
    assert any("sorting by speaker and by utterance disagree" in p for p in dd.validate_dir(path))


def test_validate_cli_exit_status(tmp_path):
    path = str(tmp_path / "d")
    make_dir(path, [2])
    cli = [sys.executable, "subtools/data_dir.py", "validate", path]
    assert subprocess.run(cli, capture_output=True).returncode == 0
    write(path, "wav.scp", ["spk0-u00 x"])
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 1 and "wav.scp: 1 utterances of utt2spk missing" in proc.stderr


def test_fix_reports_exactly_what_it_dropped(tmp_path):
    path = str(tmp_path / "d")
    utts = make_dir(path, [3, 1])
    write(path, "wav.scp", [f"{u} /a/{u}.wav" for u in reversed(utts) if u != "spk0-u01"])  # unsorted, one missing
    # sorted, then a duplicate (line 5) and an out-of-order key unknown elsewhere (line 6)
    feats = [f"{u} f.ark:{i}" for i, u in enumerate(utts)]
    write(path, "feats.scp", feats + ["spk0-u00 dup.ark:9", "ghost-u1 g.ark:1"])
    write(path, "spk2gender", ["spk0 m", "spk1 f", "spk7 m"])
    report = dd.fix_dir(path)
    assert report.dropped_utts == {
        "spk0-u01": "missing from wav.scp",
        "ghost-u1": "missing from wav.scp, utt2spk, utt2num_frames",
    }
    assert report.dropped_spks == {"spk7": "no utterances left"}
    assert report.duplicates == ["feats.scp:5 spk0-u00"]
    assert "wav.scp" in report.resorted and "feats.scp" in report.resorted
    assert dd.validate_dir(path) == []
    assert read_table(os.path.join(path, "feats.scp"))["spk0-u00"] == "f.ark:0"  # first kept
    assert "dropped utterance spk0-u01: missing from wav.scp" in str(report)


def test_subset_variants(tmp_path):
    src = str(tmp_path / "d")
    utts = make_dir(src, [10, 3, 5])
    out = dd.subset_dir(src, str(tmp_path / "list"), utt_list=["spk1-u02", "spk2-u00", "nobody"])
    assert sorted(out.utt2spk) == ["spk1-u02", "spk2-u00"]
    assert set(out.tables["spk2gender"]) == {"spk1", "spk2"}
    out = dd.subset_dir(src, str(tmp_path / "num"), num=6)
    assert sorted(out.utt2spk) == [utts[i] for i in (3, 5, 8, 12, 14, 17)]   # Kaldi subset_scp.pl's halving
    out = dd.subset_dir(src, str(tmp_path / "per"), per_spk=4)
    assert {s: len(u) for s, u in out.spk2utt.items()} == {"spk0": 4, "spk1": 3, "spk2": 4}
    assert out.spk2utt["spk0"] == ["spk0-u00", "spk0-u02", "spk0-u04", "spk0-u06"]  # Kaldi stride 2 for 10 utts
    out = dd.subset_dir(src, str(tmp_path / "spk"), spk_list=["spk2"])
    assert list(out.spk2utt) == ["spk2"] and len(out.utt2spk) == 5
    for name in ("list", "num", "per", "spk"):
        assert dd.validate_dir(str(tmp_path / name)) == []
        assert os.path.isfile(tmp_path / name / "trials" / "mini-O")
    with pytest.raises(ValueError, match="exactly one"):
        dd.subset_dir(src, str(tmp_path / "x"), num=2, per_spk=1)


@pytest.mark.parametrize("by", ["spk", "utt"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_split_covers_every_utterance_once(tmp_path, by, n):
    src = str(tmp_path / "d")
    utts = make_dir(src, [7, 1, 4, 9, 2, 6])
    paths = dd.split_dir(src, n, by)
    assert paths == [os.path.join(src, f"split{n}" + ("utt" if by == "utt" else ""), str(k)) for k in range(1, n + 1)]
    parts = [dd.DataDir.load(p) for p in paths]
    assert sorted(u for p in parts for u in p.utt2spk) == utts
    assert all(p.utt2spk for p in parts)
    if by == "spk":
        spks = [s for p in parts for s in p.spk2utt]
        assert len(spks) == len(set(spks)) == 6  # no speaker in two parts
    else:
        sizes = [len(p.utt2spk) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    for p in paths:
        assert dd.validate_dir(p) == []


def test_split_by_speaker_balances_and_refuses_too_many(tmp_path):
    utt2spk = {f"s{s}-{u}": f"s{s}" for s in range(8) for u in range(10)}
    assert [len(p) for p in dd.partition(utt2spk, 4, "spk")] == [20, 20, 20, 20]
    with pytest.raises(ValueError, match="8 speakers into 9 parts"):
        dd.partition(utt2spk, 9, "spk")


def test_combine_and_filter(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    make_dir(a, [2, 2])
    write(b, "utt2spk", ["spk0-x1 spk0", "spk9-x1 spk9"])
    write(b, "wav.scp", ["spk0-x1 p", "spk9-x1 q"])
    write(b, "spk2gender", ["spk0 m", "spk9 f"])
    out, warnings = dd.combine_dirs(str(tmp_path / "c"), [a, b])
    assert len(out.utt2spk) == 6 and out.spk2utt["spk0"] == ["spk0-u00", "spk0-u01", "spk0-x1"]
    assert any("utt2num_frames left out" in w for w in warnings)
    assert dd.validate_dir(str(tmp_path / "c")) == []
    assert os.path.isfile(tmp_path / "c" / "trials" / "mini-O")
    with pytest.raises(ValueError, match="duplicate utterance 'spk0-u00'"):
        dd.combine_dirs(str(tmp_path / "c2"), [a, a + "/"])
    out = dd.filter_dir(str(tmp_path / "c"), str(tmp_path / "f"), ["spk9-x1", "spk1-u00"], exclude=True)
    assert sorted(out.utt2spk) == ["spk0-u00", "spk0-u01", "spk0-x1", "spk1-u01"]
    assert set(out.tables["spk2gender"]) == {"spk0", "spk1"}


def test_remove_utt_thresholds(tmp_path):
    src = str(tmp_path / "d")
    frames = {"spk0-u00": 199, "spk0-u01": 200, "spk1-u00": 150}
    make_dir(src, [9, 9, 8], frames=frames)
    removed = dd.remove_utt(src, str(tmp_path / "r"), min_frames=200, min_utts=8)
    # spk0 loses 1 utt (8 left: kept); spk1 loses 1 (8 left: kept); spk2 has 8 (kept)
    assert removed == {"spk0-u00": "199 frames < 200", "spk1-u00": "150 frames < 200"}
    removed = dd.remove_utt(src, str(tmp_path / "r9"), min_frames=200, min_utts=9)
    assert len(removed) == 9 + 9 + 8 - 0 and set(dd.DataDir.load(str(tmp_path / "r9")).utt2spk) == set()
    out = dd.DataDir.load(str(tmp_path / "r"))
    assert "spk0-u01" in out.utt2spk and "spk0-u00" not in out.utt2num_frames
    assert dd.validate_dir(str(tmp_path / "r")) == []
