"""Views: CLEAR/ESimCSE/SimCSE/DeCLUTR text edits and ConSERT embedding-level views."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from contrastkit.views.cutoff import (
    embed_with_cutoff,
    embedding_view_inputs,
    feature_cutoff,
    token_cutoff,
    token_cutoff_mask,
    token_shuffle,
)
from contrastkit.views.edits import (
    TEXT_EDITS,
    WordNet,
    WordNetUnavailableError,
    crop,
    get_wordnet,
    reorder,
    span_deletion,
    span_sampling,
    synonym_substitution,
    word_deletion,
    word_repetition,
)

SENT = "The Quick brown fox, jumps over the lazy dog near River bank today."
WORDS = SENT.split()
# Parameters large enough that each edit visibly changes the 13-word sentence.
STRONG = {"word_deletion": {"p": 0.3}, "span_deletion": {"ratio": 0.3}, "reorder": {"ratio": 0.4},
          "synonym_substitution": {"p": 0.8}, "word_repetition": {"dup_rate": 0.5}, "crop": {"ratio": 0.3}}

wordnet_missing = False
try:
    get_wordnet().synonyms("car")
except WordNetUnavailableError:
    wordnet_missing = True
needs_wordnet = pytest.mark.skipif(wordnet_missing, reason="WordNet files (Debian package wordnet-base) absent")


def _edit_params():
    return [pytest.param(name, marks=needs_wordnet) if name == "synonym_substitution" else name
            for name in TEXT_EDITS]


def _is_subsequence(sub: list[str], full: list[str]) -> bool:
    it = iter(full)
    return all(w in it for w in sub)


def _is_contiguous(sub: list[str], full: list[str]) -> bool:
    k = len(sub)
    return any(full[i:i + k] == sub for i in range(len(full) - k + 1))


# -- shared contracts ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", _edit_params())
def test_edit_is_deterministic_under_seed_and_varies_across_seeds(name):
    fn, params = TEXT_EDITS[name], STRONG[name]
    assert fn(SENT, random.Random(7), **params) == fn(SENT, random.Random(7), **params)
    outs = {fn(SENT, random.Random(seed), **params) for seed in range(12)}
    assert len(outs) > 1
    assert any(o != SENT for o in outs)


@pytest.mark.parametrize("name", _edit_params())
def test_edit_rejects_empty_and_handles_single_word(name):
    fn = TEXT_EDITS[name]
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="empty"):
            fn(empty, random.Random(0))
    for seed in range(10):
        out = fn("Hello", random.Random(seed), **STRONG[name]).split()
        assert out  # never empty
        if name != "synonym_substitution":  # the others can only keep or repeat the one word
            assert set(out) == {"Hello"}


# -- CLEAR ---------------------------------------------------------------------------------------
def test_word_deletion_keeps_order_and_never_empties():
    for seed in range(30):
        out = word_deletion(SENT, random.Random(seed), p=0.3).split()
        assert 1 <= len(out) <= len(WORDS) and _is_subsequence(out, WORDS)
    assert word_deletion(SENT, random.Random(0), p=0.0) == SENT
    for seed in range(5):  # p=1 would delete everything: one original word survives
        out = word_deletion(SENT, random.Random(seed), p=1.0).split()
        assert len(out) == 1 and out[0] in WORDS
    with pytest.raises(ValueError):
        word_deletion(SENT, random.Random(0), p=1.5)


def test_span_deletion_removes_one_contiguous_span():
    for seed in range(20):
        out = span_deletion(SENT, random.Random(seed), ratio=0.25).split()
        assert len(out) == len(WORDS) - 3  # round(0.25 * 13)
        cut = next(i for i in range(len(WORDS)) if i == len(out) or out[i] != WORDS[i])
        assert out == WORDS[:cut] + WORDS[cut + 3:]
    assert len(span_deletion("a b c d e", random.Random(0), ratio=0.1).split()) == 4  # at least one word


def test_reorder_keeps_multiset_of_words():
    changed = 0
    for seed in range(20):
        out = reorder(SENT, random.Random(seed), ratio=0.2).split()
        assert Counter(out) == Counter(WORDS) and len(out) == len(WORDS)
        changed += out != WORDS
        assert sum(a != b for a, b in zip(out, WORDS)) == 2  # max(1, round(0.2 * 13 / 2)) = 1 swapped pair
    assert changed == 20  # all words differ ('The' != 'the'), so every swap shows
    out = reorder(SENT, random.Random(0), ratio=1.0).split()
    assert Counter(out) == Counter(WORDS) and sum(a != b for a, b in zip(out, WORDS)) >= 8  # 6 pairs
    assert reorder(SENT, random.Random(0), ratio=0.0) == SENT


@needs_wordnet
def test_wordnet_synonyms_of_car():
    syns = get_wordnet().synonyms("car")
    assert {"auto", "automobile", "machine", "motorcar"} <= set(syns)
    assert "car" not in syns
    assert get_wordnet().synonyms("xyzzyqq") == []


@needs_wordnet
def test_synonym_substitution_uses_wordnet_and_keeps_the_rest():
    allowed = set(get_wordnet().synonyms("car"))
    seen = set()
    for seed in range(10):
        out = synonym_substitution("the car", random.Random(seed), p=1.0)
        assert out.startswith("the ")  # stop word untouched
        seen.add(out[4:])
    assert seen and seen <= allowed
    # case and punctuation of the replaced word are kept; unknown and stop words untouched
    out = synonym_substitution("Car, the blorptastic", random.Random(0), p=1.0)
    first, rest = out.split(" ", 1)
    assert first.endswith(",") and first[0].isupper() and first[:-1].lower() in allowed
    assert rest == "the blorptastic"
    assert synonym_substitution(SENT, random.Random(0), p=0.0) == SENT


def test_missing_wordnet_raises_error_naming_package(tmp_path: Path):
    with pytest.raises(WordNetUnavailableError, match="wordnet-base"):
        synonym_substitution("the car", random.Random(0), p=1.0, wordnet=WordNet(tmp_path))


# -- ESimCSE, SimCSE -----------------------------------------------------------------------------
def test_word_repetition_only_duplicates_adjacent_words():
    lengths = set()
    for seed in range(40):
        out = word_repetition(SENT, random.Random(seed)).split()
        assert _is_subsequence(WORDS, out) and set(out) == set(WORDS)  # every original word kept
        extra = len(out) - len(WORDS)
        assert 0 <= extra <= max(2, int(0.32 * len(WORDS)))  # dup_len ~ U{0..max(2, int(0.32 * n))}
        lengths.add(extra)
        collapsed = [w for k, w in enumerate(out) if k == 0 or out[k - 1] != w]
        assert collapsed == WORDS  # each added copy sits right after its original (SENT has no repeats)
    assert lengths == set(range(max(2, int(0.32 * len(WORDS))) + 1))  # 13 words: 0..4


def test_crop_keeps_a_contiguous_part():
    for seed in range(20):
        out = crop(SENT, random.Random(seed), ratio=0.25).split()
        assert len(out) == len(WORDS) - 3 and _is_contiguous(out, WORDS)
    assert crop("one two", random.Random(0), ratio=0.5) in ("one", "two")


# -- DeCLUTR -------------------------------------------------------------------------------------
DOC = " ".join(f"w{i}" for i in range(200))


def _span(text: str) -> tuple[int, int]:
    idx = [int(w[1:]) for w in text.split()]
    assert idx == list(range(idx[0], idx[0] + len(idx)))  # a contiguous span of the document
    return idx[0], idx[0] + len(idx)


@pytest.mark.parametrize("strategy", [None, "subsuming", "adjacent"])
def test_span_sampling_relations_and_lengths(strategy):
    anchor_lens, pos_lens = [], []
    for seed in range(60):
        anchor, positive = span_sampling(DOC, random.Random(seed), max_span_len=64, min_span_len=8,
                                         strategy=strategy)
        (a0, a1), (p0, p1) = _span(anchor), _span(positive)
        assert 8 <= a1 - a0 <= 64 and 1 <= p1 - p0 <= 64
        assert p1 >= a0 and p0 <= a1  # overlapping, adjacent or subsumed: never disjoint with a gap
        if strategy == "subsuming":
            assert a0 <= p0 and p1 <= a1
        if strategy == "adjacent":
            assert p1 == a0 or p0 == a1
        anchor_lens.append(a1 - a0)
        pos_lens.append(p1 - p0)
    if strategy is None:  # Beta(4,2) anchors are longer on average than Beta(2,4) positives
        assert sum(anchor_lens) / 60 > sum(pos_lens) / 60 + 10
    assert span_sampling(DOC, random.Random(3)) == span_sampling(DOC, random.Random(3))


def test_span_sampling_short_documents_and_errors():
    a, p = span_sampling("only", random.Random(0))
    assert a == p == "only"
    a, p = span_sampling("a b c d e f", random.Random(0))  # bounds shrink to n // 2 = 3 words
    assert 1 <= len(a.split()) <= 3 and 1 <= len(p.split()) <= 3
    with pytest.raises(ValueError, match="empty"):
        span_sampling(" ", random.Random(0))
    with pytest.raises(ValueError):
        span_sampling(DOC, random.Random(0), strategy="nearby")


# -- ConSERT -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder(tiny_bert: Path):
    from contrastkit.encoders import Encoder

    enc = Encoder.from_pretrained(str(tiny_bert), pooling="mean")
    enc.eval()
    return enc


@pytest.fixture(scope="module")
def features():
    """Hand-made batch: right padding, a short row, and a left-padded row."""
    mask = torch.tensor([[1] * 10, [1] * 4 + [0] * 6, [0] * 3 + [1] * 7])
    return {"input_ids": torch.arange(30).view(3, 10) * mask, "attention_mask": mask}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_token_cutoff_zeroes_exactly_chosen_real_rows(features):
    mask = features["attention_mask"]
    emb = torch.randn(*mask.shape, 8, generator=_gen(0)) + 5.0  # no exact zeros
    cut = token_cutoff_mask(mask, 0.5, _gen(1))
    out = token_cutoff(emb, mask, 0.5, _gen(1))
    zero_rows = (out == 0).all(-1)
    assert torch.equal(zero_rows, cut)
    assert not (cut & ~mask.bool()).any()  # padding never chosen
    assert cut.sum(1).tolist() == [int(n * 0.5) for n in mask.sum(1).tolist()]
    assert torch.equal(out[~cut], emb[~cut])  # everything else untouched
    assert torch.equal(out, token_cutoff(emb, mask, 0.5, _gen(1)))
    assert not torch.equal(out, token_cutoff(emb, mask, 0.5, _gen(2)))


def test_feature_cutoff_zeroes_chosen_columns(features):
    b, t = features["attention_mask"].shape
    emb = torch.randn(b, t, 20, generator=_gen(0)) + 5.0
    out = feature_cutoff(emb, 0.25, _gen(3))
    for i in range(b):
        zero_cols = (out[i] == 0).all(0)
        assert int(zero_cols.sum()) == 5  # int(0.25 * 20)
        assert not (out[i][:, ~zero_cols] == 0).any()
        assert torch.equal(out[i][:, ~zero_cols], emb[i][:, ~zero_cols])
    assert torch.equal(out, feature_cutoff(emb, 0.25, _gen(3)))
    assert not torch.equal(out, feature_cutoff(emb, 0.25, _gen(4)))
    with pytest.raises(ValueError):
        feature_cutoff(emb, 1.0, _gen(0))


def test_token_shuffle_permutes_only_real_positions(features):
    mask = features["attention_mask"].bool()
    pos = token_shuffle(features, _gen(5))
    base = torch.arange(mask.shape[1])
    for i in range(mask.shape[0]):
        real = mask[i]
        assert sorted(pos[i, real].tolist()) == base[real].tolist()
        assert torch.equal(pos[i, ~real], base[~real])
    assert not torch.equal(pos[0], base) and not torch.equal(pos[2], base)  # 10 and 7 real tokens
    assert torch.equal(pos, token_shuffle(features, _gen(5)))
    assert not torch.equal(pos, token_shuffle(features, _gen(6)))


def test_embed_with_cutoff_runs_backbone_and_matches_plain_forward(encoder):
    features = encoder.tokenize(["a man is playing guitar in the park", "dog runs", "the cat"])
    with torch.no_grad():
        plain = encoder(features)
        none = embed_with_cutoff(encoder, features, "none", 0.0, _gen(0))
        assert torch.allclose(none, plain, atol=1e-5)
        for kind in ("token_shuffle", "token_cutoff", "feature_cutoff"):
            a = embed_with_cutoff(encoder, features, kind, 0.3, _gen(0))
            assert a.shape == plain.shape and torch.isfinite(a).all()
            assert torch.equal(a, embed_with_cutoff(encoder, features, kind, 0.3, _gen(0)))
            assert not torch.allclose(a, plain, atol=1e-4)
    kwargs = embedding_view_inputs(encoder.backbone, features, "token_cutoff", 0.3, _gen(0))
    assert torch.equal(kwargs["attention_mask"], features["attention_mask"])
    with pytest.raises(ValueError, match="unknown embedding view"):
        embed_with_cutoff(encoder, features, "mixup", 0.1, _gen(0))
