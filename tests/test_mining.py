"""Teacher-mined hard negatives: rank window, positive-aware false-negative filter, caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.data import Example
from contrastkit.data.mining import load_or_mine, mine_negatives
from contrastkit.errors import ConfigError, DataError

# A 2-d "teacher": each text maps to a unit vector at the given angle (degrees), so scores are cosines.
ANGLES = {"q": 0, "p": 10, "n1": 5, "n2": 20, "n3": 40, "n4": 60, "n5": 80,
          "q2": 180, "p2": 185}


def embed_calls():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        a = torch.tensor([ANGLES[t] for t in texts], dtype=torch.float32) * torch.pi / 180
        return torch.stack([a.cos(), a.sin()], dim=1)

    return embed, calls


PAIRS = [Example(("q", "p")), Example(("q2", "p2"))] + [Example((f"x{i}", n)) for i, n in
                                                          enumerate(["n1", "n2", "n3", "n4", "n5"])]
for i in range(5):
    ANGLES[f"x{i}"] = 100 + i


def test_rank_window_and_relative_margin():
    embed, _ = embed_calls()
    out, stats = mine_negatives(PAIRS, embed, rank_window=(0, 4), margin=0.95, num_negatives=2)
    first = out[0]
    # q's candidates by score: n1 (cos 5) > n2 (cos 20) > n3 > n4 ...; positive p at cos 10 = 0.985.
    # n1 (0.996) > 0.95 * 0.985 = 0.936 -> dropped as a false negative; n2 (0.940) > 0.936 -> dropped too.
    assert first.texts[:2] == ("q", "p")
    assert first.texts[2:] == ("n3", "n4")
    assert stats.false_negatives_dropped >= 2 and stats.pairs == len(PAIRS)


def test_absolute_margin_and_window_lower_bound():
    embed, _ = embed_calls()
    out, _ = mine_negatives(PAIRS[:1] + PAIRS[2:], embed, rank_window=(1, 4), margin=0.0, margin_type="absolute",
                            num_negatives=1)
    # ranks 1..3 of q: n2, n3, n4 (rank 0 n1 skipped by the window); n2 (0.940) <= 0.985 - 0 -> kept
    assert out[0].texts == ("q", "p", "n2")


def test_pairs_without_enough_survivors_are_left_out_and_counted():
    embed, _ = embed_calls()
    out, stats = mine_negatives(PAIRS, embed, rank_window=(0, 2), margin=0.5, num_negatives=2)
    assert stats.left_out == len(PAIRS) - len(out) > 0
    assert stats.mined == len(out)


def test_cache_is_reused_and_keyed_on_parameters(tmp_path: Path):
    embed, calls = embed_calls()
    params = {"rank_window": [0, 4], "margin": 0.95, "margin_type": "relative", "num_negatives": 1}
    a, _, cached = load_or_mine(PAIRS, embed, tmp_path / "m.jsonl", teacher="t", params=params)
    n = len(calls)
    b, _, cached2 = load_or_mine(PAIRS, embed, tmp_path / "m.jsonl", teacher="t", params=params)
    assert not cached and cached2 and a == b and len(calls) == n
    load_or_mine(PAIRS, embed, tmp_path / "m.jsonl", teacher="t", params={**params, "margin": 0.9})
    assert len(calls) > n


def test_bad_input_is_named():
    embed, _ = embed_calls()
    with pytest.raises(DataError, match="pairs"):
        mine_negatives([Example(("q",)), Example(("p",))], embed)
    with pytest.raises(ConfigError, match="rank_window"):
        mine_negatives(PAIRS, embed, rank_window=(5, 5))
    with pytest.raises(ConfigError, match="num_negatives"):
        mine_negatives(PAIRS, embed, rank_window=(0, 2), num_negatives=3)
