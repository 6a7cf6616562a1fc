"""Retrieve-then-rerank on the paraphrase retrieval tasks, and reranker speed against sentence-transformers.

1. Trains a cross-encoder from an encoder checkpoint (``--base``, a new one-label head) with the listwise
   softmax over teacher-mined negatives (``contrastkit.rerank``), on training-split paraphrase pairs that
   share no sentence with the test sets: STS-B train (score >= 4), SICK train (relatedness >= 4.5 and
   ENTAILMENT) and Bible training-book KJV -> WEB verses (``--train-pairs`` in all).
2. For STSB / SICK / MRPC-paraphrase and Bible-KJV-WEB: nDCG@10 and MRR@10 of the bi-encoder alone
   (``--retriever``) vs its top ``--k`` reranked by the cross-encoder, by the LLM reranker (``--llm``,
   on ``--llm-limit`` queries per task) and by the DSE-distilled bi-encoder (``--distill-steps``).
3. Speed: pairs/s of ``CrossEncoderReranker.predict`` vs ``sentence_transformers.CrossEncoder(path).predict``
   on the same saved model and the same pairs, alternating, best of ``--repeats`` (ratio in the same run).

    python benchmarks/rerank.py [--limit Q --max-corpus N --train-pairs P --steps S]   # smoke: small values

Writes ``benchmarks/results/rerank.json`` (``--out``) with the machine and package versions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from _tasks import exclude_self, load_tasks, md_table  # noqa: E402

TASKS = ["STSB-paraphrase", "SICK-paraphrase", "MRPC-paraphrase", "Bible-KJV-WEB"]


def training_pairs(n: int, seed: int = 0) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Up to ``n`` paraphrase pairs from training splits only: STS-B train, SICK train, Bible training books."""
    from contrastkit.data.embedded import embedded_pairs
    from contrastkit.evaluation.senteval import resolve_senteval_dir

    root = resolve_senteval_dir(None, needed_for="reranker training pairs")
    pools: dict[str, list[tuple[str, str]]] = {"stsb-train": [], "sick-train": [], "bible-train": []}
    with open(root / "STS" / "STSBenchmark" / "sts-train.csv", encoding="utf-8") as fh:
        for line in fh:
            f = line.strip().split("\t")
            if len(f) >= 7 and float(f[4]) >= 4.0 and f[5] != f[6]:
                pools["stsb-train"].append((" ".join(f[5].split()), " ".join(f[6].split())))
    with open(root / "SICK" / "SICK_train.txt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            f = line.strip().split("\t")
            if i and len(f) >= 5 and float(f[3]) >= 4.5 and f[4] == "ENTAILMENT" and f[1] != f[2]:
                pools["sick-train"].append((" ".join(f[1].split()), " ".join(f[2].split())))
    try:
        pools["bible-train"] = embedded_pairs("bible-train")
    except Exception as e:  # noqa: BLE001 - no diatheke: train without the Bible pairs
        print(f"no Bible pairs ({e})", file=sys.stderr)
    rng = random.Random(seed)
    share = max(1, n // len(pools))
    out: list[tuple[str, str]] = []
    counts = {}
    for name, pairs in pools.items():
        take = rng.sample(pairs, min(share, len(pairs)))
        counts[name] = len(take)
        out += take
    rng.shuffle(out)
    return out, counts


def retrieve(encode: Any, task: Any, k: int) -> dict[str, list[str]]:
    """Top-k corpus ids per query by cosine (the query itself excluded on the paraphrase tasks)."""
    from contrastkit.evaluation.retrieval import search

    c = encode(list(task.corpus_texts))
    q = encode(list(task.query_texts))
    _, idx = search(q, c, k + 1)
    out = {}
    for row, qid in enumerate(task.query_ids):
        docs = [task.corpus_ids[j] for j in idx[row].tolist()]
        if exclude_self(task):
            docs = [d for d in docs if d != qid]
        out[qid] = docs[:k]
    return out


def score(rankings: dict[str, list[str]], task: Any) -> dict[str, float]:
    """nDCG@10 and MRR@10 x 100 over the task's judged queries."""
    from contrastkit.evaluation.retrieval import score_rankings

    qrels = {q: task.qrels[q] for q in rankings}
    m = score_rankings(rankings, qrels, (("ndcg", 10), ("mrr", 10)))
    return {"ndcg@10": 100 * m["ndcg@10"], "mrr@10": 100 * m["mrr@10"], "n_queries": m["n_queries"]}


def random_order(first: dict[str, list[str]], qids: list[str], task: Any, draws: int = 20) -> dict[str, float]:
    """nDCG@10 / MRR@10 of the first-stage lists of ``qids`` in random order (mean of ``draws`` shuffles)."""
    rng = random.Random(0)
    runs = [score({q: rng.sample(first[q], len(first[q])) for q in qids}, task) for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in runs])) for k in ("ndcg@10", "mrr@10")} | {"n_queries": len(qids)}


def reranked(reranker: Any, task: Any, first: dict[str, list[str]], qids: list[str], batch_size: int) -> dict:
    """The first-stage lists of ``qids`` reordered by ``reranker``."""
    from contrastkit.rerank import rerank_candidates

    text = dict(zip(task.corpus_ids, task.corpus_texts))
    queries = dict(zip(task.query_ids, task.query_texts))
    return rerank_candidates(reranker, {q: queries[q] for q in qids},
                             {q: [(d, text[d]) for d in first[q]] for q in qids}, batch_size=batch_size)


def speed(path: Path, pairs: list[tuple[str, str]], batch_size: int, repeats: int) -> dict[str, float]:
    """pairs/s of contrastkit's predict and sentence-transformers' CrossEncoder.predict, alternating runs."""
    from sentence_transformers import CrossEncoder

    from contrastkit.rerank import CrossEncoderReranker

    ours, st = CrossEncoderReranker.from_pretrained(str(path)), CrossEncoder(str(path), device="cpu")
    ours.predict(pairs[:batch_size], batch_size=batch_size)
    st.predict(pairs[:batch_size], batch_size=batch_size)
    best = {"contrastkit": float("inf"), "sentence-transformers": float("inf")}
    diff = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a = ours.predict(pairs, batch_size=batch_size)
        best["contrastkit"] = min(best["contrastkit"], time.perf_counter() - t)
        t = time.perf_counter()
        b = st.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        best["sentence-transformers"] = min(best["sentence-transformers"], time.perf_counter() - t)
        diff = max(diff, float(np.abs(a - b).max()))
    rate = {k: len(pairs) / v for k, v in best.items()}
    return {"pairs": len(pairs), "batch_size": batch_size, "repeats": repeats,
            "contrastkit_pairs_per_s": rate["contrastkit"], "st_pairs_per_s": rate["sentence-transformers"],
            "ratio_contrastkit_over_st": rate["contrastkit"] / rate["sentence-transformers"],
            "max_abs_score_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--retriever", default="all-MiniLM-L6-v2", help="first-stage bi-encoder (also mines negatives)")
    ap.add_argument("--base", default="all-MiniLM-L6-v2", help="encoder checkpoint the cross-encoder starts from")
    ap.add_argument("--reranker", help="use this saved cross-encoder instead of training one")
    ap.add_argument("--train-pairs", type=int, default=6000)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="training precision (bf16 autocast: ~5x faster on a CPU with AMX)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--k", type=int, default=20, help="candidates reranked per query")
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--limit", type=int, default=None, help="queries per task")
    ap.add_argument("--max-corpus", type=int, default=None, help="documents per task (smoke runs)")
    ap.add_argument("--llm", default="smollm2-135m", help="causal LM for the LLM reranker ('none': skip)")
    ap.add_argument("--llm-views", type=int, default=1, help="prompt views of the LLM reranker (1 or 2)")
    ap.add_argument("--llm-limit", type=int, default=50, help="queries per task the LLM reranks")
    ap.add_argument("--llm-only", action="store_true",
                    help="retrieval and the LLM reranker only (no cross-encoder, no speed comparison)")
    ap.add_argument("--distill-steps", type=int, default=0, help="DSE distillation steps (0: skip)")
    ap.add_argument("--speed-pairs", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work-dir", default="runs/bench-rerank")
    ap.add_argument("--out", default="benchmarks/results/rerank.json")
    args = ap.parse_args()

    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.cache import EmbeddingCache
    from contrastkit.rerank import (DEFAULT_VIEWS, CrossEncoderReranker, LLMReranker, distill_cross_encoder,
                                    mine_rerank_examples, train_cross_encoder)
    from contrastkit.teacher import Teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    work = Path(args.work_dir)
    retriever = Encoder.from_pretrained(args.retriever)
    out: dict[str, Any] = {"benchmark": "rerank", "date": str(date.today()), "machine": cpu_model(),
                           "versions": versions(), "args": vars(args)}
    examples: list[Any] = []
    ce_path: Path | None = None
    if args.llm_only:
        pass
    elif args.reranker:
        ce_path = Path(args.reranker)
    else:
        pairs, counts = training_pairs(args.train_pairs)
        t = time.perf_counter()
        examples, stats = mine_rerank_examples(pairs, Teacher(retriever).embed, num_negatives=args.negatives)
        mine_s = time.perf_counter() - t
        ce = CrossEncoderReranker.from_pretrained(args.base, max_length=args.max_length)
        t = time.perf_counter()
        history = train_cross_encoder(ce, examples, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                      precision=args.precision)
        ce_path = ce.save(work / "cross-encoder")
        out["training"] = {"pairs": counts, "mined": stats.mined, "left_out": stats.left_out,
                           "false_negatives_dropped": stats.false_negatives_dropped, "mine_s": round(mine_s, 1),
                           "train_s": round(time.perf_counter() - t, 1), "history": history, "model": str(ce_path)}
        print("trained", out["training"]["train_s"], "s; loss", history[0]["loss"], "->", history[-1]["loss"],
              flush=True)
    ce = CrossEncoderReranker.from_pretrained(str(ce_path)) if ce_path is not None else None
    llm = None
    if args.llm != "none":
        llm = LLMReranker.from_pretrained(args.llm, views=DEFAULT_VIEWS[:args.llm_views])
        out["llm_chat_template"] = llm.chat  # prompts rendered through the LM's own chat format
    student = None
    if args.distill_steps and examples and ce is not None:
        student = Encoder.from_pretrained(args.retriever)
        t = time.perf_counter()
        hist = distill_cross_encoder(student, ce, examples, steps=args.distill_steps, batch_size=args.batch_size,
                                     lr=args.lr, precision=args.precision)
        out["distill"] = {"steps": args.distill_steps, "train_s": round(time.perf_counter() - t, 1), "history": hist}

    tasks, skipped = load_tasks(args.tasks, args.limit, args.max_corpus)
    enc = EmbeddingCache(lambda texts: retriever.encode(texts, precision="fp32"))
    results: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        t = time.perf_counter()
        first = retrieve(enc, task, args.k)
        res: dict[str, Any] = {"retrieval": score(first, task)}
        res["retrieval_s"] = round(time.perf_counter() - t, 1)
        qids = list(first)
        if ce is not None:
            t = time.perf_counter()
            res["cross-encoder"] = score(reranked(ce, task, first, qids, 64), task)
            res["cross-encoder_s"] = round(time.perf_counter() - t, 1)
        if llm is not None:
            sub = qids[:args.llm_limit]
            t = time.perf_counter()
            res["retrieval@llm_queries"] = score({q: first[q] for q in sub}, task)
            res["random@llm_queries"] = random_order(first, sub, task)
            res["llm"] = score(reranked(llm, task, first, sub, 8), task)
            res["llm_s"] = round(time.perf_counter() - t, 1)
        if student is not None:
            res["distilled bi-encoder"] = score(retrieve(lambda x: student.encode(x, precision="fp32"), task,
                                                         args.k), task)
        results[name] = res
        print(name, json.dumps({k: v for k, v in res.items() if isinstance(v, dict)}), flush=True)

    def col(column: str, metric: str) -> Callable[[dict[str, Any]], Any]:
        return lambda r: r[column][metric]

    k = args.k
    columns: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("queries", col("retrieval", "n_queries")), ("nDCG@10 retrieval", col("retrieval", "ndcg@10"))]
    if ce is not None:
        columns.append((f"nDCG@10 +CE@{k}", col("cross-encoder", "ndcg@10")))
    columns.append(("MRR@10 retrieval", col("retrieval", "mrr@10")))
    if ce is not None:
        columns.append((f"MRR@10 +CE@{k}", col("cross-encoder", "mrr@10")))
    if llm is not None:
        columns += [("LLM queries", col("llm", "n_queries")),
                    ("nDCG@10 retrieval (same queries)", col("retrieval@llm_queries", "ndcg@10")),
                    (f"nDCG@10 top-{k} shuffled", col("random@llm_queries", "ndcg@10")),
                    (f"nDCG@10 +LLM@{k}", col("llm", "ndcg@10")),
                    ("MRR@10 retrieval (same queries)", col("retrieval@llm_queries", "mrr@10")),
                    (f"MRR@10 +LLM@{k}", col("llm", "mrr@10"))]
    if student is not None:
        columns.append(("nDCG@10 distilled bi-encoder", col("distilled bi-encoder", "ndcg@10")))
    header = ["task", *(title for title, _ in columns)]
    rows = [[name, *(value(r) for _, value in columns)] for name, r in results.items()]
    out["table"] = md_table(header, rows)
    print(out["table"])
    if ce_path is not None:
        some = [(task.query_texts[i], task.corpus_texts[j]) for task in tasks.values()
                for i, j in zip(range(len(task.query_texts)), range(len(task.corpus_texts)))]
        speed_pairs = (some * (1 + args.speed_pairs // max(1, len(some))))[:args.speed_pairs]
        out["speed"] = speed(ce_path, speed_pairs, 32, args.repeats)
        print("speed", json.dumps(out["speed"]))
    out.update(results=results, skipped=skipped, wall_s=round(time.perf_counter() - t0, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
