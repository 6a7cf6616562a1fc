"""``contrastkit distill``: distil a transformer encoder into a static token-embedding model."""

from __future__ import annotations

import argparse
import json


def _cmd_distill(args: argparse.Namespace) -> int:
    from ..encoders.static_distill import DistillConfig, distill_static

    cfg = DistillConfig(dim=args.dim, corpus=args.corpus, corpus_size=args.corpus_size, sif=args.sif,
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        temperature=args.temperature,
                        regression_weight=args.regression_weight, seed=args.seed)
    model = distill_static(args.teacher, corpus=args.corpus, config=cfg, show_progress=args.progress,
                           cache=not args.no_cache)
    path = model.save(args.output)
    print(f"wrote a static model ({model.vocab_size} tokens x {model.dim} dims) to {path}")
    print(json.dumps(model.meta.get("distill", {})))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``distill`` command."""
    from ..encoders.static_distill import CORPORA, DistillConfig

    d = DistillConfig()
    p = sub.add_parser("distill", help="distil a transformer into a static (token table) model",
                       description="Embed every vocabulary token with the teacher, reduce with PCA, weight "
                                   "with SIF, then tune the table against the teacher's sentence embeddings "
                                   "on an unlabeled corpus. The output loads with Encoder.from_pretrained "
                                   "and SentenceTransformer.")
    p.add_argument("--teacher", required=True, help="teacher model dir, hub name or alias (all-MiniLM-L6-v2)")
    p.add_argument("--output", required=True, help="directory for the static model")
    p.add_argument("--dim", type=int, default=d.dim, help="dimensions kept by PCA")
    p.add_argument("--corpus", default=d.corpus,
                   help=f"unlabeled texts for weighting and tuning: {', '.join(CORPORA)} or a text/JSONL file")
    p.add_argument("--corpus-size", type=int, default=d.corpus_size, help="texts sampled from the corpus")
    p.add_argument("--sif", type=float, default=d.sif, help="SIF coefficient a of a/(a+p(token))")
    p.add_argument("--steps", type=int, default=d.steps, help="tuning steps (0: no tuning)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="corpus texts per tuning step")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of the tuning")
    p.add_argument("--temperature", type=float, default=d.temperature,
                   help="temperature of the contrastive tuning loss")
    p.add_argument("--regression-weight", type=float, default=d.regression_weight,
                   help="weight of the similarity-matrix regression term")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (corpus sample, tuning)")
    p.add_argument("--no-cache", action="store_true", help="do not cache teacher embeddings of the corpus")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_cmd_distill)
