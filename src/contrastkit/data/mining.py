"""Teacher-mined hard negatives with positive-aware false-negative filtering -> triplet examples.

For every (anchor, positive) pair a frozen teacher retrieves the nearest positives of the other
pairs (the corpus is the set of all positive texts; exact cosine search,
``contrastkit.evaluation.retrieval.search``). Candidates ranked in ``rank_window = [lo, hi)``
(0 = the best match) are kept -- skipping the very top, where unlabeled true positives sit -- and
then filtered as in NV-Retriever (Moreira et al., 2024, "positive-aware" mining):

- ``margin_type: relative`` (TopK-PercPos): drop a candidate whose teacher score exceeds
  ``margin * s(anchor, positive)`` (NV-Retriever's best setting is 0.95);
- ``margin_type: absolute`` (TopK-MarginPos): drop it when the score exceeds ``s(anchor, positive) - margin``.

The ``num_negatives`` highest-scoring survivors become the example's hard negatives (ANCE-style
teacher mining, E5's consistency filtering in spirit). A pair with fewer survivors is left out and
counted (never silently). Results are cached as JSONL keyed by the teacher, the parameters and
the data, so a rerun (or a resumed run) reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from .examples import Example


@dataclass
class MiningStats:
    """What mining did: pairs in, triplets out, pairs left out, candidates dropped as likely false negatives."""

    pairs: int = 0
    mined: int = 0
    left_out: int = 0
    false_negatives_dropped: int = 0


def _check(rank_window: Sequence[int], margin: float, margin_type: str, num_negatives: int) -> tuple[int, int]:
    if len(rank_window) != 2 or not 0 <= rank_window[0] < rank_window[1]:
        raise ConfigError(f"mining.rank_window must be [lo, hi] with 0 <= lo < hi, got {list(rank_window)}")
    if margin_type not in ("relative", "absolute"):
        raise ConfigError(f"mining.margin_type must be 'relative' or 'absolute', got {margin_type!r}")
    if num_negatives < 1 or num_negatives > rank_window[1] - rank_window[0]:
        raise ConfigError(f"mining.num_negatives must be in 1..hi-lo={rank_window[1] - rank_window[0]}, "
                          f"got {num_negatives}")
    if margin_type == "relative" and not margin > 0:
        raise ConfigError(f"mining.margin (relative) must be > 0, got {margin}")
    return int(rank_window[0]), int(rank_window[1])


def mine_negatives(examples: Sequence[Example], embed: Any, *, rank_window: Sequence[int] = (10, 50),
                   margin: float = 0.95, margin_type: str = "relative", num_negatives: int = 1,
                   show_progress: bool = False) -> tuple[list[Example], MiningStats]:
    """Turn (anchor, positive) examples into (anchor, positive, negative_1..k) with teacher-mined negatives.

    ``embed(texts) -> (n, d) tensor`` is the teacher (e.g. ``Teacher.embed``).
    """
    from ..evaluation.retrieval import search

    lo, hi = _check(rank_window, margin, margin_type, num_negatives)
    for i, ex in enumerate(examples):
        if len(ex.texts) != 2:
            raise DataError(f"mining needs (anchor, positive) pairs; example {i} has {len(ex.texts)} texts")
    corpus = list(dict.fromkeys(ex.texts[1] for ex in examples))
    anchors = [ex.texts[0] for ex in examples]
    q = torch.nn.functional.normalize(embed(anchors).float().cpu(), dim=-1)
    c = torch.nn.functional.normalize(embed(corpus).float().cpu(), dim=-1)
    where = {t: j for j, t in enumerate(corpus)}
    pos_scores = (q * c[torch.tensor([where[ex.texts[1]] for ex in examples])]).sum(-1)
    scores, idx = search(q, c, hi + 2)  # +2: the own anchor and positive may sit in the window
    stats = MiningStats(pairs=len(examples))
    out: list[Example] = []
    rows = range(len(examples))
    if show_progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="mine", unit="pair")
    for i in rows:
        ex, pos = examples[i], float(pos_scores[i])
        limit = margin * pos if margin_type == "relative" else pos - margin
        ranked = [(float(s), int(j)) for s, j in zip(scores[i], idx[i])
                  if corpus[int(j)] not in (ex.texts[0], ex.texts[1])][lo:hi]
        kept = [j for s, j in ranked if s <= limit]
        stats.false_negatives_dropped += len(ranked) - len(kept)
        if len(kept) < num_negatives:
            stats.left_out += 1
            continue
        out.append(Example((ex.texts[0], ex.texts[1], *(corpus[j] for j in kept[:num_negatives])), ex.score))
    stats.mined = len(out)
    return out, stats


def cache_key(teacher: str, params: dict[str, Any], examples: Sequence[Example]) -> str:
    """sha256 of the teacher name, the mining parameters and every example's texts."""
    h = hashlib.sha256(json.dumps({"teacher": teacher, **params}, sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps(ex.texts).encode())
    return h.hexdigest()


def load_or_mine(examples: Sequence[Example], embed: Any, cache: str | Path, *, teacher: str,
                 params: dict[str, Any], show_progress: bool = False) -> tuple[list[Example], MiningStats, bool]:
    """Mined triplets from ``cache`` when its key matches, else mine and write the cache (atomically).

    Returns (triplets, stats, whether the cache was used).
    """
    path = Path(cache)
    key = cache_key(teacher, params, examples)
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            head = json.loads(fh.readline() or "{}")
            if head.get("key") == key:
                mined = [Example(tuple(row["texts"]), row.get("score")) for row in map(json.loads, fh)]
                return mined, MiningStats(**head["stats"]), True
    mined, stats = mine_negatives(examples, embed, show_progress=show_progress, **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"key": key, "stats": asdict(stats)}) + "\n")
        for ex in mined:
            fh.write(json.dumps({"texts": list(ex.texts), "score": ex.score}) + "\n")
    os.replace(tmp, path)
    return mined, stats, False


__all__ = ["MiningStats", "cache_key", "load_or_mine", "mine_negatives"]
