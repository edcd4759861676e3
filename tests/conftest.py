"""Shared pytest fixtures.

``tiny_corpus``: the built-in corpus at size ``tiny`` (conf/mini_corpus.yaml), built once per
session into a temporary directory with recipe/mini/make_corpus.py's library entry point.
Returns ``SimpleNamespace(corpus_dir, data_dir, train, test, config)``: ``train``/``test`` are
the Kaldi data dirs ``<data_dir>/mini_train`` and ``<data_dir>/mini_test`` (trials in
``test/trials/{mini-O,mini-H}``), ``config`` the resolved corpus config (dict).
Needs espeak-ng; without it the fixture fails with the install command.
"""
import os
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_CONFIG = os.path.join(REPO, "conf", "mini_corpus.yaml")


def build_tiny_corpus(root, nj=2):
    """Build the tiny corpus under ``root`` (``root/corpus``, ``root/data``); return the namespace."""
    from recipe.mini.local.espeak import EspeakError, require_espeak
    from recipe.mini.make_corpus import build_corpus, load_config

    cfg = load_config(CORPUS_CONFIG, "tiny")
    voices = cfg["voices"]
    try:
        require_espeak(voices["accents"], voices["female"] + voices["male"]
                       + voices["babble"]["female"] + voices["babble"]["male"])
    except EspeakError as err:
        pytest.fail(str(err))
    corpus_dir, data_dir = os.path.join(root, "corpus"), os.path.join(root, "data")
    build_corpus(cfg, corpus_dir, data_dir, nj, log=lambda *_: None)
    return types.SimpleNamespace(corpus_dir=corpus_dir, data_dir=data_dir, config=cfg,
                                 train=os.path.join(data_dir, "mini_train"), test=os.path.join(data_dir, "mini_test"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return build_tiny_corpus(str(tmp_path_factory.mktemp("tiny_corpus")))
