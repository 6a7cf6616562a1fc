"""Static embeddings: contrastkit's distilled static model vs Model2Vec's, both from all-MiniLM-L6-v2.

Distils both from the same local teacher (ours: ``distill_static``; Model2Vec:
``model2vec.distill.distill(model_name=<teacher dir>, pca_dims=DIM)``, its defaults otherwise),
scores teacher, ours and Model2Vec on the seven SimCSE STS tasks (SentEval protocol; STS-B dev
too, the only split used for choosing settings), and times ``encode`` of the same distinct
SentEval STS sentences (the first ``--texts``) for each model: the median of ``--runs`` runs
(``--teacher-runs`` for the teacher), with torch on ``--threads`` threads and tokenizers'
parallelism off, so every model gets the same cores. Writes JSON to benchmarks/results/.

    python benchmarks/static_vs_model2vec.py            # full: 20k texts (about 8-12 min on 2 idle cores)
    python benchmarks/static_vs_model2vec.py --quick    # smoke test: 2k-text corpus, 1,000 texts (3-5 min)

Our distillation caches the teacher's embeddings of its corpus (``teacher_cached`` in the JSON);
a cold distill encodes 60k WordNet sentences first (about 3-4 min more); ``--no-cache`` times that.

Model2Vec runs in a venv of its own (``bash benchmarks/setup_model2vec_peer.sh``; its ``[distill]``
extra caps transformers below the core's pinned version), driven in a subprocess that distils, times
its own ``encode`` runs and hands embeddings back as ``.npy`` files; contrastkit's side runs here.
Without that venv ($MODEL2VEC_PEER_VENV, else $CONTRASTKIT_CACHE/model2vec-peer, else
~/.cache/contrastkit/model2vec-peer) the Model2Vec rows are skipped, and the JSON says why.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, peer_versions, versions  # noqa: E402

TEACHER = "all-MiniLM-L6-v2"
SETUP = "bash benchmarks/setup_model2vec_peer.sh"

# Runs under the peer venv's python: distils on start, then answers one JSON request per stdin line.
PEER = r'''
import json, os, statistics, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
proto, sys.stdout = sys.stdout, sys.stderr  # library prints must not reach the protocol stream
import numpy as np
import torch
from model2vec.distill import distill
teacher_dir, dim, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
t = time.perf_counter()
model = distill(model_name=teacher_dir, pca_dims=dim)
proto.write(json.dumps({"distill_s": time.perf_counter() - t}) + "\n")
proto.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    texts = json.loads(open(cmd["texts"], encoding="utf-8").read())
    times, emb = [], None
    for _ in range(cmd["runs"]):
        t = time.perf_counter()
        emb = model.encode(texts, use_multiprocessing=False)
        times.append(time.perf_counter() - t)
    np.save(cmd["out"], np.asarray(emb))
    proto.write(json.dumps({"runs_s": times}) + "\n")
    proto.flush()
'''


def _timed(fn, texts: list[str], runs: int) -> tuple[float, list[float], np.ndarray]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn(texts)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, np.asarray(out)


def peer_python() -> Path | None:
    """Python of the Model2Vec peer venv, if set up."""
    base = Path(os.environ.get("CONTRASTKIT_CACHE", Path.home() / ".cache" / "contrastkit"))
    py = Path(os.environ.get("MODEL2VEC_PEER_VENV", base / "model2vec-peer")) / "bin" / "python"
    return py if py.is_file() else None


class Model2VecPeer:
    """Model2Vec in its peer venv: distils on start, then encodes over stdin/stdout with embeddings in .npy files."""

    def __init__(self, python: Path, teacher_dir: str, dim: int, threads: int, workdir: Path) -> None:
        script = workdir / "model2vec_peer.py"
        script.write_text(PEER)
        self.workdir = workdir
        self.proc = subprocess.Popen([str(python), str(script), teacher_dir, str(dim), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.distill_s = float(self._read()["distill_s"])

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Model2Vec peer exited with {self.proc.wait()} (see its stderr above)")
        return json.loads(line)

    def timed(self, texts: list[str], runs: int) -> tuple[float, list[float], np.ndarray]:
        """Encode ``texts`` ``runs`` times in the peer; its own encode times (median, all) and the embeddings."""
        src, dst = self.workdir / "texts.json", self.workdir / "emb.npy"
        src.write_text(json.dumps(texts), encoding="utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"texts": str(src), "runs": runs, "out": str(dst)}) + "\n")
        self.proc.stdin.flush()
        times = [float(x) for x in self._read()["runs_s"]]
        return statistics.median(times), times, np.load(dst)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (one untimed run)."""
        return self.timed(texts, 1)[2]

    def close(self) -> None:
        """Stop the peer process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _sts_sentences(limit: int) -> list[str]:
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.sts import SIMCSE_TASKS

    seen: dict[str, None] = {}
    for name in SIMCSE_TASKS:
        for a, b in load_sts_task(name).pairs:
            seen.setdefault(a, None)
            seen.setdefault(b, None)
    return list(seen)[:limit]


def _memo(fn, cache: dict[str, np.ndarray]):
    """Encode only texts not in ``cache`` (filled by the timing runs), so the teacher encodes once."""
    def encode(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            cache.update(zip(todo, np.asarray(fn(todo))))
        return np.stack([cache[t] for t in texts])
    return encode


def _score(encode) -> dict[str, float]:
    from contrastkit.evaluation.sts import SIMCSE_TASKS, evaluate_sts, stsb_dev

    res = evaluate_sts(encode, tasks=SIMCSE_TASKS, avg_tasks=SIMCSE_TASKS)
    return {"avg_simcse7": round(res.avg, 2), "tasks": {k: round(v, 2) for k, v in res.scores.items()},
            "stsb_dev": round(stsb_dev(encode), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--texts", type=int, default=20_000, help="distinct STS sentences timed")
    ap.add_argument("--runs", type=int, default=5, help="timing runs of each static model")
    ap.add_argument("--teacher-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--corpus-size", type=int, default=None, help="our distillation corpus (default: ours)")
    ap.add_argument("--steps", type=int, default=None, help="our tuning steps (default: ours)")
    ap.add_argument("--no-cache", action="store_true",
                    help="re-encode the distillation corpus with the teacher (times a cold distill)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1,000 texts, small corpus, few steps")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.texts, args.runs, args.teacher_runs = 1000, 2, 1
        args.corpus_size = args.corpus_size or 2000
        args.steps = args.steps if args.steps is not None else 100
    out_path = Path(args.out or f"benchmarks/results/static_vs_model2vec{'_quick' if args.quick else ''}.json")

    import torch

    torch.set_num_threads(args.threads)
    from contrastkit.encoders import Encoder
    from contrastkit.encoders.backbones import resolve_alias
    from contrastkit.encoders.static_distill import DistillConfig, distill_static

    with tempfile.TemporaryDirectory(prefix="model2vec-peer-") as work:
        py = peer_python()
        peer: Model2VecPeer | None = None
        skipped = None if py is not None else f"no Model2Vec peer venv (run: {SETUP})"
        try:
            teacher = Encoder.from_pretrained(TEACHER)
            cfg = DistillConfig(dim=args.dim)
            if args.corpus_size:
                cfg.corpus_size = args.corpus_size
            if args.steps is not None:
                cfg.steps = args.steps
            t = time.perf_counter()
            ours = distill_static(teacher, config=cfg, cache=not args.no_cache)
            ours_distill_s = time.perf_counter() - t
            if py is not None:
                try:
                    peer = Model2VecPeer(py, str(resolve_alias(TEACHER)), args.dim, args.threads, Path(work))
                except (RuntimeError, OSError, ValueError) as err:
                    skipped = f"Model2Vec peer failed to start ({err}); check it with: {SETUP}"
            if skipped:
                print(f"skipping the Model2Vec rows: {skipped}", file=sys.stderr, flush=True)
            results = _measure(args, teacher, ours, peer)
        finally:
            if peer is not None:
                peer.close()

    base = results["teacher"]
    compared = ["contrastkit_static"] + (["model2vec"] if peer is not None else [])
    for name in compared:
        r = results[name]
        r["speedup_vs_teacher"] = round(results["teacher_sentence_transformers"]["encode_median_s"]
                                        / r["encode_median_s"], 1)
        r["speedup_vs_teacher_contrastkit_fp32"] = round(base["encode_median_s"] / r["encode_median_s"], 1)
        r["speedup_vs_teacher_contrastkit_auto"] = round(results["teacher_contrastkit_auto"]["encode_median_s"]
                                                         / r["encode_median_s"], 1)
        r["quality_vs_teacher"] = round(r["avg_simcse7"] / base["avg_simcse7"], 4)
    results["contrastkit_static"]["distill_s"] = round(ours_distill_s, 1)
    results["contrastkit_static"]["distill_settings"] = ours.meta.get("distill")
    if peer is not None:
        results["model2vec"]["distill_s"] = round(peer.distill_s, 1)
        results["model2vec"]["distill_settings"] = {"pca_dims": args.dim, "other": "model2vec defaults"}
        results["model2vec"]["runs_in"] = f"peer venv {py.parent.parent} (subprocess; times taken there)"
    else:
        results["model2vec"] = {"skipped": skipped}

    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": "python " + " ".join(sys.argv), "torch_threads": args.threads,
           "teacher": TEACHER, "timed_texts": len(results["texts"]),
           "timed_texts_source": "distinct sentences of the 7 SimCSE STS tasks (SentEval), first N",
           "distill_corpus": f"{cfg.corpus} ({cfg.corpus_size} texts sampled); no STS data",
           "versions": versions(),
           "peer_versions": {"model2vec": peer_versions(py, ["model2vec"]) if peer is not None else skipped},
           "results": {k: v for k, v in results.items() if k != "texts"},
           "ours_minus_model2vec_avg": round(results["contrastkit_static"]["avg_simcse7"]
                                             - results["model2vec"]["avg_simcse7"], 2) if peer is not None else None}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {out_path}")
    for name in compared:
        r = results[name]
        print(f"{name}: STS avg {r['avg_simcse7']} ({100 * r['quality_vs_teacher']:.1f}% of the teacher's "
              f"{base['avg_simcse7']}), {r['speedup_vs_teacher']}x the teacher's encode speed (sentence-transformers; "
              f"{r['speedup_vs_teacher_contrastkit_fp32']}x contrastkit fp32, {r['speedup_vs_teacher_contrastkit_auto']}x "
              "contrastkit bf16)")
    if peer is None:
        print(f"Model2Vec rows skipped: {skipped}")


def _measure(args: argparse.Namespace, teacher, ours, peer: Model2VecPeer | None) -> dict:
    """Time and score the teacher (two ways), our static model and, when its peer runs, Model2Vec."""
    from sentence_transformers import SentenceTransformer

    from contrastkit.encoders.backbones import resolve_alias

    teacher_st = SentenceTransformer(resolve_alias(TEACHER), device="cpu")
    texts = _sts_sentences(args.texts)
    # Speed-ups are quoted against the teacher as sentence-transformers runs it (its defaults: fp32,
    # batch 32), the reference of Model2Vec's own figures; also against contrastkit's fast teacher path.
    timing_only = {
        "teacher_sentence_transformers": lambda x: teacher_st.encode(x),
        "teacher_contrastkit_auto": lambda x: teacher.encode(x, batch_size=64, precision="auto"),
    }
    for name, fn in timing_only.items():
        med, times, _ = _timed(fn, texts, args.teacher_runs)
        timing_only[name] = {"encode_median_s": round(med, 4), "encode_runs_s": [round(x, 4) for x in times],
                             "texts_per_s": round(len(texts) / med, 1)}
        print(name, json.dumps(timing_only[name]), flush=True)
    encoders = {
        "teacher": lambda x: teacher.encode(x, batch_size=64, precision="fp32"),
        "contrastkit_static": lambda x: ours.encode(x),
    }
    if peer is not None:
        encoders["model2vec"] = peer.encode
    results: dict = {"texts": texts}
    for name, fn in encoders.items():
        runs = args.teacher_runs if name == "teacher" else args.runs
        # Model2Vec's encode is timed inside its peer process (no IPC or file I/O in the times).
        med, times, emb = peer.timed(texts, runs) if name == "model2vec" else _timed(fn, texts, runs)
        cache = dict(zip(texts, emb))
        results[name] = {"encode_median_s": round(med, 4), "encode_runs_s": [round(x, 4) for x in times],
                         "texts_per_s": round(len(texts) / med, 1), "dim": int(emb.shape[1]),
                         **_score(_memo(fn, cache))}
        print(name, json.dumps(results[name]), flush=True)
    results.update(timing_only)
    return results


if __name__ == "__main__":
    main()
