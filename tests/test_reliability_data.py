"""Reliability of data-dir tools and trials (issue: no silently wrong output): fix keeps a backup and only
touches tables it knows, validate fails an empty dir, repeated trial or score pairs are errors."""
import os
import subprocess
import sys

import pytest

from subtools.kaldi import data_dir as dd
from subtools.kaldi.fileio import read_table, write_table
from subtools.kaldi.trials import drop_repeats
from subtools.score.trials import read_scores, read_trials

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_dir(path):
    utts = {f"s{s}-u{u}": f"s{s}" for s in range(2) for u in range(3)}
    write_table(path / "utt2spk", utts)
    write_table(path / "wav.scp", {u: f"/audio/{u}.wav" for u in utts})
    write_table(path / "spk2gender", {"s0": "f", "s1": "m"})
    dd.write_spk2utt(path / "spk2utt", dd.utt2spk_to_spk2utt(utts))
    return utts


def test_fix_backs_up_and_ignores_files_that_are_not_kaldi_tables(tmp_path):
    utts = small_dir(tmp_path)
    write_table(tmp_path / "utt2spk_orig", {"s0-u0": "s0"})          # a stray copy, one line
    write_table(tmp_path / "wav.scp", {u: f"/audio/{u}.wav" for u in utts if u != "s1-u2"})
    before = {n: (tmp_path / n).read_bytes() for n in ("utt2spk", "wav.scp", "spk2utt", "spk2gender", "utt2spk_orig")}
    report = dd.fix_dir(str(tmp_path))
    assert set(report.dropped_utts) == {"s1-u2"}                      # only the utterance wav.scp lacks
    assert set(read_table(tmp_path / "utt2spk")) == set(utts) - {"s1-u2"}
    assert (tmp_path / "utt2spk_orig").read_bytes() == before["utt2spk_orig"]   # left alone
    for name, content in before.items():
        assert (tmp_path / ".backup" / name).read_bytes() == content
    assert dd.validate_dir(str(tmp_path)) == []


def test_fix_extra_files_are_kept_consistent(tmp_path):
    small_dir(tmp_path)
    write_table(tmp_path / "utt2score", {"s0-u0": "1", "s1-u1": "2"})
    cli = subprocess.run([sys.executable, "subtools/data_dir.py", "fix", "--extra-files", "utt2score", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert "4 utterances dropped" in cli.stdout
    assert set(read_table(tmp_path / "utt2spk")) == {"s0-u0", "s1-u1"} == set(read_table(tmp_path / "utt2score"))
    with pytest.raises(ValueError, match="extra table 'notes.txt'"):
        dd.fix_dir(str(tmp_path), ["notes.txt"])


def test_validate_fails_an_empty_data_dir(tmp_path):
    (tmp_path / "utt2spk").write_text("")
    (tmp_path / "wav.scp").write_text("")
    assert dd.validate_dir(str(tmp_path)) == ["utt2spk: empty (the data dir has no utterance)"]
    cli = subprocess.run([sys.executable, "subtools/data_dir.py", "validate", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "empty" in cli.stderr


def test_repeated_trials_and_scores_are_errors(tmp_path):
    (tmp_path / "trials").write_text("a b target\na c nontarget\na b target\n")
    with pytest.raises(ValueError, match=r"trials:3: the pair 'a b' is listed again \(first at line 1\)"):
        read_trials(str(tmp_path / "trials"))
    (tmp_path / "scores").write_text("a b 1.0\na c 0.5\na c 0.7\n")
    with pytest.raises(ValueError, match=r"scores:3: the pair 'a c' is listed again \(first at line 2\)"):
        read_scores(str(tmp_path / "scores"))
    cli = subprocess.run([sys.executable, "subtools/score/compute_metrics.py", "--trials", str(tmp_path / "trials"),
                          "--scores", str(tmp_path / "scores")], cwd=REPO, capture_output=True, text=True)
    assert cli.returncode != 0 and "listed again" in cli.stderr and "Traceback" not in cli.stderr


def test_corpus_lists_drop_repeats_with_a_warning(capsys):
    trials = [("a", "b", "target"), ("a", "c", "nontarget"), ("a", "b", "target")]
    assert drop_repeats(trials, "list.txt") == trials[:2]
    assert "list.txt: 1 repeated trial(s) dropped (first kept), e.g. 'a b'" in capsys.readouterr().err


def subset_scp_pl(lines, num):
    """Kaldi's utils/subset_scp.pl N, transcribed from its Perl (recursive select_n), as the reference."""
    out = []

    def select_n(start, end, needed):
        if end - start == 1:
            if needed > 0:
                out.append(lines[start])
        else:
            half = (end - start) // 2
            select_n(start, start + half, needed // 2)
            select_n(start + half, end, needed - needed // 2)

    select_n(0, len(lines), num)
    return out


@pytest.mark.parametrize("count, num", [(10, 3), (24, 6), (37, 37), (1000, 1), (997, 250), (4096, 1024)])
def test_evenly_spread_is_kaldis_subset_scp(count, num):
    from subtools.kaldi.data_dir.ops import evenly_spread
    assert evenly_spread(count, num) == subset_scp_pl(list(range(count)), num)
    assert evenly_spread(10, 3) == [4, 6, 9]


def test_kaldi_augmentation_subset_and_subset_num_follow_kaldi(tmp_path):
    from subtools.kaldi import augment
    utts = [f"s{i:02d}-u" for i in range(8)]
    kaldi = augment.select_copies(utts, augment.KINDS, 1, subset="kaldi")
    assert kaldi == [(u, "reverb") for u in utts]           # 32 sorted ids, every 4th: the last kind
    balanced = augment.select_copies(utts, augment.KINDS, 1)
    assert {k for _, k in balanced} == set(augment.KINDS)
    ids = sorted(f"{u}-{k}" for u in [f"x{i}" for i in range(6)] for k in augment.KINDS)
    chosen = augment.select_copies([f"x{i}" for i in range(6)], augment.KINDS, 1, subset="kaldi")
    assert [f"{u}-{k}" for u, k in chosen] == subset_scp_pl(ids, 6)
    (tmp_path / "src").mkdir()
    utt2spk = small_dir(tmp_path / "src")
    out = dd.subset_dir(str(tmp_path / "src"), str(tmp_path / "dst"), num=4)
    assert sorted(out.utt2spk) == subset_scp_pl(sorted(utt2spk), 4)
