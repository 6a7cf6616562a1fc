"""Encode throughput on CPU: contrastkit's torch / bf16 / ONNX / int8 ONNX paths vs sentence-transformers.

All paths embed the same sentences with all-MiniLM-L6-v2 (mean pooling, normalized, max length
256) at batch size 32 (sentence-transformers' default ``encode`` batch size, used for every path),
runs interleaved so that machine noise hits all alike; the median of ``--repeats`` runs is
reported. Paths:

- ``st_default``: sentence-transformers 6.2.0 ``SentenceTransformer.encode`` as a user gets it (fp32);
- ``ck_fp32``: contrastkit ``Encoder.encode(precision="fp32")``;
- ``ck_default``: ``precision="auto"`` (a bf16 copy of the weights on a CPU with AVX-512 BF16/AMX);
- ``ck_onnx`` / ``ck_onnx_int8``: ``Encoder.from_pretrained(dir, backend="onnx" | "onnx-int8")`` after
  ``contrastkit export --quantize int8`` (ONNX Runtime: as many single-threaded batch runs at once as torch has threads);
- ``st_onnx``: sentence-transformers' own ONNX backend (``backend="onnx"``, its own export via
  Optimum), version 5.1.2 in a separate venv made by ``benchmarks/setup_st_onnx_peer.sh`` (6.2.0's
  onnx extra does not resolve beside transformers 5), driven in a subprocess. Skipped, and said so
  in the JSON, when that venv is missing.

Sentences: SentEval STS texts (STS12-16, STS-B, SICK-R, via contrastkit's loaders) then the
transfer sets' texts (MR, CR, SUBJ, MPQA, TREC), deduplicated, the first ``--n`` in that order.
Timed scope: the ``encode`` call only (model loading and export excluded). Also reported:
STS-B test Spearman x100 of each path and its change vs ``ck_fp32`` (checks: bf16 within 0.1,
int8 within 0.5), the measured matmul peak (fp32, bf16 GFLOP/s) and each path's fraction of it
in useful FLOPs (2 x non-embedding params x real tokens + attention 4 x layers x T^2 x d per
text; padding not counted; bf16 paths against the bf16 peak, the others against fp32).

    python benchmarks/encode_throughput.py [--n 20000] [--repeats 5] [--quick]
        [--out benchmarks/results/encode_throughput.json]
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
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, peer_versions, versions  # noqa: E402
from train_throughput import matmul_peak  # noqa: E402

BATCH = 32  # sentence-transformers' default encode batch size, used for every path
PATHS = ("st_default", "ck_fp32", "ck_default", "ck_onnx", "ck_onnx_int8", "st_onnx")
STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark-train", "STSBenchmark-dev", "STSBenchmark",
             "SICKRelatedness-train", "SICKRelatedness-dev", "SICKRelatedness")
TRANSFER_FILES = ("MR/rt-polarity.pos", "MR/rt-polarity.neg", "CR/custrev.pos", "CR/custrev.neg",
                  "SUBJ/subj.objective", "SUBJ/subj.subjective", "MPQA/mpqa.pos", "MPQA/mpqa.neg",
                  "TREC/train_5500.label", "TREC/TREC_10.label")

PEER = r'''
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], backend="onnx", device="cpu")
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    texts = json.loads(open(cmd["texts"]).read())
    t = time.perf_counter()
    emb = model.encode(texts, batch_size=cmd["batch_size"])
    seconds = time.perf_counter() - t
    if cmd.get("out"):
        np.save(cmd["out"], emb)
    print(json.dumps({"seconds": seconds}), flush=True)
'''


def corpus(n: int) -> list[str]:
    """SentEval STS texts then transfer texts, deduplicated, first ``n`` in a fixed order."""
    from contrastkit.evaluation.senteval import load_sts_task, resolve_senteval_dir

    seen: dict[str, None] = {}
    for name in STS_TASKS:
        for a, b in load_sts_task(name).pairs:
            seen.setdefault(a, None)
            seen.setdefault(b, None)
    root = resolve_senteval_dir()
    for rel in TRANSFER_FILES:
        for line in (root / rel).read_text(encoding="latin-1").splitlines():
            text = line.split(" ", 1)[1] if rel.startswith("TREC") and " " in line else line  # drop TREC's label
            text = " ".join(text.split())
            if text:
                seen.setdefault(text, None)
    sents = list(seen)
    if len(sents) < n:
        raise SystemExit(f"need {n} sentences, found {len(sents)}")
    return sents[:n]


def peer_python() -> Path | None:
    """Python of the sentence-transformers ONNX peer venv, if set up."""
    base = Path(os.environ.get("CONTRASTKIT_CACHE", Path.home() / ".cache" / "contrastkit"))
    venv = Path(os.environ.get("ST_ONNX_PEER_VENV", base / "st-onnx-peer"))
    py = venv / "bin" / "python"
    return py if py.is_file() else None


class Peer:
    """sentence-transformers' ONNX backend in the peer venv, driven over stdin/stdout."""

    def __init__(self, python: Path, model_dir: Path, workdir: Path) -> None:
        script = workdir / "st_onnx_peer.py"
        script.write_text(PEER)
        self.workdir = workdir
        self.proc = subprocess.Popen([str(python), str(script), str(model_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._read()
        self.versions = peer_versions(python, ["optimum", "optimum-onnx"])

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sentence-transformers ONNX peer exited (see its stderr above)")
        return json.loads(line)

    def encode(self, texts: list[str], out: Path | None = None) -> float:
        """Encode ``texts`` in the peer; returns its encode seconds (embeddings saved to ``out``)."""
        src = self.workdir / "texts.json"
        src.write_text(json.dumps(texts))
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"texts": str(src), "batch_size": BATCH, "out": str(out) if out else None})
                              + "\n")
        self.proc.stdin.flush()
        return float(self._read()["seconds"])

    def close(self) -> None:
        """Stop the peer process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def useful_flops(enc, texts: list[str]) -> float:
    """Forward FLOPs over real tokens: 2 x non-embedding params x T + 4 x layers x T^2 x d per text."""
    bb = enc.backbone
    emb_params = sum(p.numel() for p in bb.embeddings.parameters()) if hasattr(bb, "embeddings") else \
        bb.get_input_embeddings().weight.numel()
    non_emb = sum(p.numel() for p in bb.parameters()) - emb_params
    lengths = np.array([len(ids) for ids in enc.tokenizer(texts, truncation=True, max_length=enc.max_length)
                        ["input_ids"]], dtype=np.float64)
    layers, d = bb.config.num_hidden_layers, bb.config.hidden_size
    return float(2 * non_emb * lengths.sum() + 4 * layers * d * (lengths**2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 sentences, 1 run")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/encode_throughput[_quick].json)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats = 2_000, 1
    out_path = Path(args.out or f"benchmarks/results/encode_throughput{'_quick' if args.quick else ''}.json")
    started = time.time()

    from sentence_transformers import SentenceTransformer

    from contrastkit.encoders import Encoder, bf16_supported, encode_precision
    from contrastkit.encoders.onnx_backend import export_model
    from contrastkit.evaluation.sts import evaluate_sts

    texts = corpus(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ck_dir, st_dir = work / "ck", work / "st"
        base = Encoder.from_pretrained("all-MiniLM-L6-v2")
        base.save(ck_dir)
        base.save(st_dir)  # a copy without onnx/: sentence-transformers' peer exports it its own way
        export = export_model(str(ck_dir), quantize="int8")
        encoders = {"ck_fp32": Encoder.from_pretrained(str(ck_dir), backend="torch"),
                    "ck_onnx": Encoder.from_pretrained(str(ck_dir), backend="onnx"),
                    "ck_onnx_int8": Encoder.from_pretrained(str(ck_dir), backend="onnx-int8")}
        encoders["ck_default"] = encoders["ck_fp32"]
        precision = {"ck_default": "auto"}
        st_model = SentenceTransformer(str(st_dir), device="cpu")
        py, peer, peer_error = peer_python(), None, "no venv (run benchmarks/setup_st_onnx_peer.sh)"
        if py is not None:
            try:
                peer = Peer(py, st_dir, work)
            except (RuntimeError, OSError, ValueError) as err:
                peer_error = f"peer failed to start: {err}"
                print(peer_error, file=sys.stderr)
        fns: dict[str, Callable[[list[str]], np.ndarray]] = {
            "st_default": lambda t: st_model.encode(t, batch_size=BATCH)}
        for key in ("ck_fp32", "ck_default", "ck_onnx", "ck_onnx_int8"):
            fns[key] = (lambda k: lambda t: encoders[k].encode(t, batch_size=BATCH,
                                                               precision=precision.get(k, "fp32")))(key)
        if peer is not None:
            def peer_encode(t: list[str]) -> np.ndarray:
                dst = work / "peer_emb.npy"
                peer.encode(t, dst)
                return np.load(dst)
            fns["st_onnx"] = peer_encode
        for fn in fns.values():  # warm-up: first-call allocations, the bf16 copy, ORT's arenas
            fn(texts[:BATCH * 2])

        runs: dict[str, list[float]] = {k: [] for k in fns}
        for rep in range(args.repeats):
            for key, fn in fns.items():
                if key == "st_onnx":
                    assert peer is not None
                    seconds = peer.encode(texts)
                else:
                    t = time.perf_counter()
                    fn(texts)
                    seconds = time.perf_counter() - t
                runs[key].append(len(texts) / seconds)
                print(f"rep {rep} {key:13s} {runs[key][-1]:8.1f} sent/s", flush=True)

        sts = {k: float(evaluate_sts(fn, tasks=["STSBenchmark"]).tasks["STSBenchmark"].spearman)
               for k, fn in fns.items()}
        flops = useful_flops(encoders["ck_fp32"], texts)
        if peer is not None:
            peer.close()
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    med = {k: statistics.median(v) for k, v in runs.items()}
    default_is_bf16 = encode_precision("auto") == "bf16"
    peak_of = {k: peak["bf16"] if k == "ck_default" and default_is_bf16 else peak["fp32"] for k in med}
    st = med["st_default"]
    ratios = {f"{k}_vs_st_default": v / st for k, v in med.items()}
    if "st_onnx" in med:
        ratios["ck_onnx_int8_vs_st_onnx"] = med["ck_onnx_int8"] / med["st_onnx"]
        ratios["ck_onnx_vs_st_onnx"] = med["ck_onnx"] / med["st_onnx"]
    delta = {k: v - sts["ck_fp32"] for k, v in sts.items()}
    summary = {
        "date": str(date.today()), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores", "torch_threads": torch.get_num_threads(),
        "bf16_native": bf16_supported(), "ck_default_precision": encode_precision("auto"),
        "versions": versions(),
        "peer_versions": {"st_onnx": peer.versions if peer is not None else peer_error},
        "model": "all-MiniLM-L6-v2", "sentences": len(texts), "repeats": args.repeats, "batch_size": BATCH,
        "median_sentences_per_s": med, "ratios": ratios,
        "stsb_test_spearman": sts, "stsb_delta_vs_ck_fp32": delta,
        "checks": {"bf16_within_0.1": abs(delta["ck_default"]) <= 0.1,
                   "int8_within_0.5": abs(delta["ck_onnx_int8"]) <= 0.5},
        "targets": {"default_ge_1.8x_st": ratios["ck_default_vs_st_default"] >= 1.8,
                    "int8_onnx_ge_3x_st": ratios["ck_onnx_int8_vs_st_default"] >= 3.0,
                    "int8_onnx_not_slower_than_st_onnx": ratios.get("ck_onnx_int8_vs_st_onnx", float("nan")) >= 1.0},
        "matmul_peak_gflops": peak,
        "useful_gflop_per_pass": flops / 1e9,
        "fraction_of_peak": {k: flops * v / len(texts) / 1e9 / peak_of[k] for k, v in med.items()},
        "fraction_of_peak_note": "ck_default against the bf16 peak when it runs bf16; the rest (int8 too) "
                                 "against the fp32 peak",
        "export": export["files"],
        "runs_sentences_per_s": runs,
        "wall_s": time.time() - started,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("runs_sentences_per_s", "export")}, indent=2))


if __name__ == "__main__":
    main()
