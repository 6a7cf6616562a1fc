"""Long-document similarity: the Lee corpus (50 news documents, human similarity of every pair).

Lee, Pincombe & Welsh (2005), "An Empirical Evaluation of Models of Text Document Similarity",
CogSci: 50 short Australian news articles (51-126 words; 53-154 all-MiniLM-L6-v2 word pieces,
median 101, so most are cut by a 64-token truncation and all fit in 256), each pair rated
by about 10 students on a 1-5 scale. The data ships in the ``gensim`` wheel's test data
(``gensim/test/test_data/lee.cor``: one document per line, Latin-1, 0xA3 being a pound sign;
``similarities0-1.txt``: the 50 x 50 matrix of mean ratings scaled to 0-1, upper triangle filled),
the same files gensim's own ``test_lee.py`` scores LSI against. Install it with ``pip install contrastkit[assets]``
(``gensim==4.4.0``); it is located through the package's file list, gensim is never imported.

Protocol (as in Lee et al. and gensim's test): cosine of the two documents' embeddings for each
of the 1,225 pairs above the diagonal; the score is the **Pearson** correlation with the human
ratings x 100 (Spearman is reported too). The documents are encoded whole up to the encoder's
``max_length``; callers state the length they used (the demo uses 256, all-MiniLM-L6-v2's own
inference limit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from contrastkit.evaluation.senteval import DataNotFoundError
from contrastkit.evaluation.sts import EncodeFn, _encode_checked, paired_cosine

__all__ = ["LEE_PACKAGE", "LeeTask", "evaluate_lee", "load_lee"]

LEE_PACKAGE = "gensim==4.4.0"
"""The PyPI package whose test data holds the Lee corpus and ratings."""

_FILES = ("gensim/test/test_data/lee.cor", "gensim/test/test_data/similarities0-1.txt")


@dataclass
class LeeTask:
    """The 50 documents, the 1,225 (i, j) pairs with i < j, and their human similarity (0-1)."""

    documents: list[str]
    pairs: list[tuple[int, int]]
    scores: np.ndarray
    source: str


def _gensim_files() -> tuple[Path, Path]:
    from importlib.metadata import PackageNotFoundError, files

    why = f"the Lee corpus comes from the {LEE_PACKAGE} wheel's test data: pip install '{LEE_PACKAGE}' " \
          "(or contrastkit[assets])"
    try:
        found = {str(f).replace("\\", "/"): f for f in (files("gensim") or [])}
    except PackageNotFoundError:
        raise DataNotFoundError(f"Lee documents not found: gensim is not installed; {why}", searched=[]) from None
    paths = []
    for name in _FILES:
        f = found.get(name)
        p = Path(str(f.locate())) if f is not None else None
        if p is None or not p.is_file():
            raise DataNotFoundError(f"Lee documents not found: {name} missing from the gensim install; {why}",
                                    searched=[p] if p else [])
        paths.append(p)
    return paths[0], paths[1]


def load_lee(documents: str | Path | None = None, similarities: str | Path | None = None) -> LeeTask:
    """Read the Lee corpus (default: from the installed gensim package) and the upper triangle of its ratings."""
    if documents is None or similarities is None:
        documents, similarities = _gensim_files()
    docs = [" ".join(line.split()) for line in Path(documents).read_text(encoding="latin-1").splitlines()]
    docs = [d for d in docs if d]
    sim = np.loadtxt(similarities, dtype=np.float64)
    if sim.shape != (len(docs), len(docs)):
        raise DataNotFoundError(f"Lee ratings {similarities} have shape {sim.shape}, expected "
                                f"({len(docs)}, {len(docs)}) for the {len(docs)} documents of {documents}",
                                searched=[Path(similarities)])
    iu = np.triu_indices(len(docs), 1)
    return LeeTask(documents=docs, pairs=list(zip(iu[0].tolist(), iu[1].tolist())), scores=sim[iu],
                   source=str(documents))


def evaluate_lee(encode: EncodeFn, task: LeeTask | None = None) -> dict[str, Any]:
    """Pearson (main) and Spearman x 100 of pairwise cosine against the Lee ratings."""
    task = task or load_lee()
    t0 = time.perf_counter()
    emb = _encode_checked(encode, task.documents)
    i = np.array([a for a, _ in task.pairs])
    j = np.array([b for _, b in task.pairs])
    sims = paired_cosine(emb[i], emb[j])
    return {"pearson": float(pearsonr(sims, task.scores)[0] * 100.0),
            "spearman": float(spearmanr(sims, task.scores)[0] * 100.0),
            "n_documents": len(task.documents), "n_pairs": len(task.pairs),
            "elapsed_s": round(time.perf_counter() - t0, 2)}
