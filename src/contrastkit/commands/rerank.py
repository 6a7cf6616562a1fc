"""``contrastkit rerank score | train | distill``: rerank documents, train a cross-encoder, distil it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _read_pairs(path: str) -> list[tuple[str, str]]:
    """(query, positive) pairs from a TSV/CSV or JSONL file with ``anchor`` and ``positive`` columns."""
    from ..data.readers import read_examples

    examples, _ = read_examples(path, kind="pair")
    return [(ex.texts[0], ex.texts[1]) for ex in examples]


def _read_documents(path: str) -> list[str]:
    """Documents from a text file (one per line) or JSONL (``text``); '-' reads stdin as text."""
    if path == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    from ..data.readers import read_examples

    examples, _ = read_examples(path, kind="single")
    return [ex.texts[0] for ex in examples]


def _cmd_score(args: argparse.Namespace) -> int:
    from ..rerank import load_reranker, rerank

    docs = _read_documents(args.input)
    if not docs:
        raise ConfigError(f"{args.input}: no documents to rerank")
    model = load_reranker(args.model)
    results = rerank(model, args.query, docs, top_n=args.top_n, return_documents=True, batch_size=args.batch_size)
    out = {"model": args.model, "query": args.query,
           "results": [{"index": r.index, "relevance_score": r.relevance_score, "document": r.document}
                       for r in results]}
    text = json.dumps(out, indent=2, ensure_ascii=False)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {len(results)} results to {args.output}")
    else:
        print(text)
    return 0


def _mine(args: argparse.Namespace, pairs: list[tuple[str, str]], teacher_name: str) -> list[Any]:
    from ..encoders import Encoder
    from ..rerank import mine_rerank_examples
    from ..teacher import Teacher

    teacher = Teacher(Encoder.from_pretrained(teacher_name))
    examples, stats = mine_rerank_examples(pairs, teacher.embed, num_negatives=args.negatives,
                                           rank_window=(args.window_lo, args.window_hi), margin=args.margin)
    print(f"mined negatives with {teacher_name}: {stats.mined} of {stats.pairs} pairs kept, {stats.left_out} left "
          f"out (too few negatives), {stats.false_negatives_dropped} likely false negatives dropped", file=sys.stderr)
    return examples


def _cmd_train(args: argparse.Namespace) -> int:
    from ..rerank import CrossEncoderReranker, train_cross_encoder

    pairs = _read_pairs(args.pairs)
    examples = _mine(args, pairs, args.teacher or args.base)
    reranker = CrossEncoderReranker.from_pretrained(args.base, max_length=args.max_length, seed=args.seed)
    history = train_cross_encoder(reranker, examples, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                  temperature=args.temperature, seed=args.seed, **_run_keys(args))
    path = reranker.save(args.output)
    print(json.dumps({"output": str(path), "examples": len(examples), "history": history[-3:]}, indent=2))
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from ..encoders import Encoder
    from ..rerank import CrossEncoderReranker, distill_cross_encoder

    pairs = _read_pairs(args.pairs)
    examples = _mine(args, pairs, args.mine_with or args.student)
    teacher = CrossEncoderReranker.from_pretrained(args.teacher)
    student = Encoder.from_pretrained(args.student)
    history = distill_cross_encoder(student, teacher, examples, steps=args.steps, batch_size=args.batch_size,
                                    lr=args.lr, temperature=args.temperature, seed=args.seed, **_run_keys(args))
    path = student.save(args.output)
    print(json.dumps({"output": str(path), "examples": len(examples), "history": history[-3:]}, indent=2))
    return 0


def _run_keys(args: argparse.Namespace) -> dict[str, Any]:
    """The Trainer's run directory, resume and time keys from the command line."""
    return {"run_dir": args.run_dir or f"{args.output}.run", "resume": args.resume, "max_minutes": args.max_minutes,
            "checkpoint_minutes": args.checkpoint_minutes, "precision": args.precision}


def _training_args(p: argparse.ArgumentParser, *, temperature: float) -> None:
    p.add_argument("--pairs", required=True, help="(query, positive) pairs: TSV/CSV with a header 'anchor', "
                                                   "'positive', or JSONL with those keys")
    p.add_argument("--output", required=True, help="directory to write the model to")
    p.add_argument("--negatives", type=int, default=4, help="teacher-mined negatives per query")
    p.add_argument("--window-lo", type=int, default=0, help="first teacher rank mined (0 = its best match)")
    p.add_argument("--window-hi", type=int, default=30, help="teacher ranks mined stop before this one")
    p.add_argument("--margin", type=float, default=0.95,
                   help="drop a candidate scoring above margin x the positive's score (likely a false negative)")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="queries per step (each with 1 + negatives candidates)")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (linear warmup and decay)")
    p.add_argument("--temperature", type=float, default=temperature, help="softmax temperature of the loss")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--run-dir", help="checkpoints and metrics.jsonl of the run (default: OUTPUT.run)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run dir")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly after this much training time (--resume continues)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also checkpoint when this much time passed since the last checkpoint")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="training precision")


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``rerank`` command group."""
    r = sub.add_parser("rerank", help="rerank documents for a query; train or distil a cross-encoder")
    rsub = r.add_subparsers(dest="rerank_command", required=True)

    s = rsub.add_parser("score", help="rerank documents for one query (JSON: index, relevance_score, document)")
    s.add_argument("--model", required=True,
                   help="cross-encoder dir ('rerank train'), or llm:NAME for a causal LM's yes/no relevance "
                        "(e.g. llm:smollm2-135m)")
    s.add_argument("--query", required=True, help="the query text")
    s.add_argument("--input", required=True, help="documents: text file (one per line), JSONL with 'text', or -")
    s.add_argument("--top-n", type=int, default=None, help="keep the best N (default: all, reordered)")
    s.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass")
    s.add_argument("--output", help="write the JSON here instead of stdout")
    s.set_defaults(func=_cmd_score)

    t = rsub.add_parser("train", help="train a cross-encoder: listwise softmax over teacher-mined negatives",
                        description="Start a one-label cross-encoder from an encoder checkpoint, mine hard negatives "
                                    "for each (query, positive) pair with a bi-encoder teacher, train with a "
                                    "softmax over each query's positive and negatives. The output loads with "
                                    "sentence_transformers.CrossEncoder(path).")
    t.add_argument("--base", required=True, help="encoder checkpoint to start from (dir, hub name or alias)")
    t.add_argument("--teacher", help="bi-encoder that mines the negatives (default: --base as a bi-encoder)")
    t.add_argument("--max-length", type=int, default=None, help="token limit of a (query, document) pair")
    _training_args(t, temperature=1.0)
    t.set_defaults(func=_cmd_train)

    d = rsub.add_parser("distill", help="distil a cross-encoder into a bi-encoder (listwise KL, the DSE idea)")
    d.add_argument("--teacher", required=True, help="cross-encoder dir (from 'rerank train')")
    d.add_argument("--student", required=True, help="bi-encoder to train (dir, hub name or alias)")
    d.add_argument("--mine-with", help="bi-encoder that mines the candidates (default: the student)")
    _training_args(d, temperature=0.05)
    d.set_defaults(func=_cmd_distill)
