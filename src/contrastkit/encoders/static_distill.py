"""Distil a transformer encoder into a :class:`StaticEncoder`, then tune the table contrastively.

Steps (Model2Vec, Tulkens and van Dongen 2024, for 1-3; Wada et al., "Static Word Embeddings
for Sentence Semantic Representation" 2025, for the sentence-level PCA and the tuning of 4):

1. every vocabulary token is embedded by the teacher on its own (``[CLS] tok [SEP]``, the
   teacher's pooling over that input);
2. PCA of the token vectors to ``dim`` components (sklearn);
3. SIF weights ``a / (a + p(token))`` (Arora et al., ICLR 2017) with ``p`` counted on the
   corpus (add-one smoothed), folded into each row's norm;
4. the table is tuned so the mean of its rows matches the teacher: InfoNCE (Oord et al. 2018,
   as in SimCSE) between each student sentence embedding and the PCA-projected teacher
   embeddings of the batch (the teacher's embedding of the same text is the positive, the
   other texts' are negatives), plus a regression of the batch's cosine-similarity matrix onto
   the teacher's. Sparse Adam updates only the rows a batch uses.

The corpus is unlabeled text only (default: WordNet glosses and examples, see
:mod:`contrastkit.data.embedded`); teacher sentence embeddings are cached on disk.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..fsutil import atomic_save_npy
from ..losses.infonce import infonce
from .encoder import Encoder
from .static import StaticEncoder

logger = logging.getLogger("contrastkit.static")

CORPORA = ("wordnet", "senteval-train", "wordnet+senteval-train")
"""Built-in distillation corpora; any other value is read as a text/JSONL file path."""


@dataclass
class DistillConfig:
    """Settings of :func:`distill_static` (see the module docstring for the steps)."""

    dim: int = 256
    corpus: str = "wordnet"
    corpus_size: int = 60_000
    sif: float = 1e-3
    steps: int = 4000
    batch_size: int = 256
    lr: float = 4e-3
    temperature: float = 0.05
    regression_weight: float = 1.0
    seed: int = 0
    teacher_batch_size: int = 128

    def validate(self) -> None:
        """Raise ConfigError on an impossible setting."""
        for name in ("dim", "corpus_size", "batch_size", "teacher_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"distill: {name} must be positive, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError(f"distill: steps must be >= 0, got {self.steps}")
        if not (self.sif is None or self.sif > 0):
            raise ConfigError(f"distill: sif must be > 0 (or None for no weighting), got {self.sif}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("distill: temperature and lr must be positive")


# -- corpus ---------------------------------------------------------------------------------------
def _senteval_train_texts() -> list[str]:
    """Texts of SentEval transfer-task *training* splits (SST-2 train, TREC train, MRPC train); no test data."""
    from ..evaluation.senteval import resolve_senteval_dir

    root = resolve_senteval_dir()
    texts: list[str] = []
    with open(root / "SST" / "binary" / "sentiment-train", encoding="utf-8") as fh:
        texts += [line.rsplit("\t", 1)[0].strip() for line in fh]
    with open(root / "TREC" / "train_5500.label", encoding="latin-1") as fh:
        texts += [line.split(" ", 1)[1].strip() for line in fh if " " in line]
    with open(root / "MRPC" / "msr_paraphrase_train.txt", encoding="utf-8-sig") as fh:
        for line in list(fh)[1:]:
            cols = line.rstrip("\n").split("\t")
            if len(cols) == 5:
                texts += [cols[3].strip(), cols[4].strip()]
    return [t for t in texts if len(t.split()) >= 3]


def load_corpus(name: str, *, limit: int | None = None, seed: int = 0) -> list[str]:
    """Unlabeled sentences for distillation: a name in :data:`CORPORA` or a text/JSONL file; deduplicated."""
    texts: list[str] = []
    for part in name.split("+") if name in CORPORA else [name]:
        if part == "wordnet":
            from ..data.embedded import wordnet_sentences

            texts += wordnet_sentences()
        elif part == "senteval-train":
            texts += _senteval_train_texts()
        else:
            from ..data import iter_examples

            if not Path(part).exists():
                raise DataError(f"corpus is neither a file nor one of {', '.join(CORPORA)}", path=part)
            texts += [ex.texts[0] for ex in iter_examples(part)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if limit is not None and len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size=limit, replace=False))]
    if not texts:
        raise DataError(f"distillation corpus {name!r} has no texts")
    return texts


# -- teacher outputs ------------------------------------------------------------------------------
def _special_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Ids the teacher puts before and after a single token (e.g. [CLS] ... [SEP])."""
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    for i in range(len(probe) - len(plain) + 1):
        if probe[i:i + len(plain)] == plain:
            return probe[:i], probe[i + len(plain):]
    return [], []


@torch.inference_mode()
def teacher_token_vectors(teacher: Encoder, *, batch_size: int = 512, show_progress: bool = False) -> np.ndarray:
    """(vocab, d) matrix: each vocabulary token embedded by the teacher as its own input (Model2Vec)."""
    tok = teacher.tokenizer
    vocab = len(tok)
    before, after = _special_ids(tok)
    ids = torch.tensor([[*before, i, *after] for i in range(vocab)], dtype=torch.long)
    teacher.eval()
    out = np.empty((vocab, teacher.dim), dtype=np.float32)
    starts = range(0, vocab, batch_size)
    if show_progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="teacher tokens", unit="batch")
    for s in starts:
        batch = ids[s:s + batch_size]
        feats = {"input_ids": batch, "attention_mask": torch.ones_like(batch),
                 "token_type_ids": torch.zeros_like(batch)}
        out[s:s + len(batch)] = teacher({k: v.to(teacher.device) for k, v in feats.items()}).float().cpu().numpy()
    return out


def _teacher_sentences(teacher: Encoder, texts: list[str], *, batch_size: int, show_progress: bool,
                       cache_key: str | None) -> tuple[np.ndarray, bool]:
    """Teacher sentence embeddings (L2-normalised) and whether they came from the cache
    (``cache_dir()/static_distill``)."""
    from .backbones import cache_dir

    path = None
    if cache_key is not None:
        digest = hashlib.sha1(("\n".join(texts) + "\0" + cache_key).encode()).hexdigest()[:16]
        path = cache_dir() / "static_distill" / f"teacher-{digest}.npy"
        if path.is_file():
            emb = np.load(path)
            if emb.shape[0] == len(texts):
                logger.info("teacher embeddings from cache %s", path)
                return emb, True
    emb = teacher.encode(texts, batch_size=batch_size, normalize=True, precision="fp32", show_progress=show_progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(path, emb)
    return np.asarray(emb, dtype=np.float32), False


# -- weighting ------------------------------------------------------------------------------------
def sif_weights(counts: np.ndarray, a: float) -> np.ndarray:
    """SIF weights ``a / (a + p)`` with ``p`` the add-one smoothed token frequency (Arora et al. 2017)."""
    counts = np.asarray(counts, dtype=np.float64)
    p = (counts + 1.0) / (counts.sum() + len(counts))
    return (a / (a + p)).astype(np.float32)


# -- the whole recipe -----------------------------------------------------------------------------
def distill_static(teacher: Encoder | str, *, dim: int = 256, corpus: str | Sequence[str] = "wordnet",
                   config: DistillConfig | None = None, show_progress: bool = False,
                   cache: bool = True, **overrides: Any) -> StaticEncoder:
    """Distil ``teacher`` into a static token table of ``dim`` columns and tune it (module docstring)."""
    from sklearn.decomposition import PCA

    cfg = config or DistillConfig(dim=dim, corpus=corpus if isinstance(corpus, str) else "<texts>")
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ConfigError(f"distill: unknown setting {key!r}; known: {', '.join(asdict(cfg))}")
        setattr(cfg, key, value)
    cfg.validate()
    teacher_name = teacher if isinstance(teacher, str) else getattr(teacher.backbone, "name_or_path", "")
    if isinstance(teacher, str):
        teacher = Encoder.from_pretrained(teacher)
    t0 = time.perf_counter()
    texts = (load_corpus(cfg.corpus, limit=cfg.corpus_size, seed=cfg.seed) if isinstance(corpus, str)
             else list(dict.fromkeys(corpus))[:cfg.corpus_size])
    if cfg.dim > teacher.dim:
        raise ConfigError(f"distill: dim {cfg.dim} exceeds the teacher's dimension {teacher.dim}")

    tokens = teacher_token_vectors(teacher, show_progress=show_progress)
    student = StaticEncoder(tokens, teacher.tokenizer)  # the tokenizer without special tokens
    source = str(getattr(teacher.backbone, "name_or_path", teacher_name))  # the resolved path of an alias
    key = f"{source}|{teacher.dim}|{teacher.pooling}|{_mtime(source)}" if cache else None
    targets, cached = _teacher_sentences(teacher, texts, batch_size=cfg.teacher_batch_size,
                                         show_progress=show_progress, cache_key=key)
    flat, offsets = student.token_ids(texts)

    n_components = min(cfg.dim, teacher.dim)
    pca = PCA(n_components=n_components, random_state=cfg.seed).fit(tokens)
    table = pca.transform(tokens).astype(np.float32)
    projected = pca.transform(targets).astype(np.float32)
    counts = np.bincount(flat.numpy(), minlength=student.vocab_size)
    weights = sif_weights(counts, cfg.sif) if cfg.sif is not None else np.ones(len(table), np.float32)
    table *= weights[:, None]

    table_t = torch.from_numpy(table)
    if cfg.steps:
        table_t = _tune(table_t, flat, offsets, torch.from_numpy(projected), cfg, show_progress)
    meta = {"teacher": str(teacher_name), "distill": {**asdict(cfg), "corpus_texts": len(texts), "teacher_cached": cached,
                                                       "seconds": round(time.perf_counter() - t0, 1)}}
    return StaticEncoder(table_t, student.tokenizer, normalize=True, meta=meta)


def _mtime(name: str) -> int:
    """Newest file time of a local model dir (0 for hub names), so a retrained teacher misses the cache."""
    path = Path(name)
    return max((f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()), default=0) if path.is_dir() else 0


def _tune(table: torch.Tensor, flat: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor,
          cfg: DistillConfig, show_progress: bool) -> torch.Tensor:
    """Contrastive + regression tuning of the table against projected teacher embeddings."""
    gen = torch.Generator().manual_seed(cfg.seed)
    weight = torch.nn.Parameter(table.clone())
    opt = torch.optim.SparseAdam([weight], lr=cfg.lr)  # only the rows a batch touches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    n = len(offsets)
    lengths = torch.diff(torch.cat([offsets, torch.tensor([len(flat)])]))
    targets = F.normalize(targets, dim=-1)
    steps = range(cfg.steps)
    if show_progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="tune static", unit="step")
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in steps:
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        starts, lens = offsets[idx], lengths[idx]
        ids = torch.cat([flat[s:s + k] for s, k in zip(starts.tolist(), lens.tolist())])
        offs = torch.zeros(len(idx), dtype=torch.long)
        offs[1:] = torch.cumsum(lens[:-1], 0)
        emb = F.normalize(F.embedding_bag(ids, weight, offs, mode="mean", sparse=True), dim=-1)
        tgt = targets[idx]
        loss = infonce(emb, tgt, temperature=cfg.temperature)
        if cfg.regression_weight:
            loss = loss + cfg.regression_weight * (emb @ emb.T - tgt @ tgt.T).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return weight.detach()
