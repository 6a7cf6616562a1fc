"""Check contrastkit's GGUF tokenizers against the installed transformers' own GGUF conversion.

For each offline GGUF model (SmolLM2-135M-Instruct, Gemma-3-270m) it tokenizes every distinct sentence of
the 7 SimCSE STS tasks (SentEval text) plus a few edge cases with

* contrastkit's tokenizer, built from the file's own vocabulary and merges (``contrastkit.lm.gguf``), and
* ``AutoTokenizer.from_pretrained(dir, gguf_file=...)`` of the installed transformers (5.24.0 in
  constraints.txt, the release the SmolLM2 benchmark figures were measured with),

and counts the sentences whose ids differ, the round trips decode(encode(text)) != text, and the special
or unknown ids found inside ordinary text. Equal ids mean every figure measured through transformers'
tokenizer is the same computation through contrastkit's.

    python benchmarks/gguf_tokenizer_check.py [--models smollm2-135m,gemma3-270m]

Writes benchmarks/results/gguf_tokenizer_check.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _machine import cpu_model, versions

from contrastkit.encoders.backbones import resolve_alias
from contrastkit.evaluation.senteval import load_sts_task
from contrastkit.lm.gguf import build_tokenizer, read_tokenizer_spec

TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
EDGE = ["A man is playing a guitar.", "  two leading spaces", "trailing  ", "a   b    c", "tabs\tand\nlines",
        "café naïve — 😀", "日本語のテキスト", "1,000,000 and 3.14159", "it's isn't we'll"]


def sentences() -> list[str]:
    """Every distinct sentence of the 7 STS tasks (SentEval text), then the edge cases."""
    out: dict[str, None] = {}
    for name in TASKS:
        for a, b in load_sts_task(name, hub=False).pairs:
            out[a] = out[b] = None
    return list(out) + EDGE


def check(alias: str, texts: list[str]) -> dict:
    """Compare the two tokenizers of one model on ``texts``."""
    from transformers import AutoTokenizer

    path = Path(resolve_alias(alias))
    t0 = time.perf_counter()
    spec = read_tokenizer_spec(path)
    ours = build_tokenizer(spec)
    build_s = time.perf_counter() - t0
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    special = {i for i in (spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id) if i is not None}
    diff, round_trip, specials, examples = 0, 0, 0, []
    for text in texts:
        a, b = ours(text)["input_ids"], ref(text)["input_ids"]
        if a != b:
            diff += 1
            if len(examples) < 5:
                examples.append({"text": text, "contrastkit": a[:20], "transformers": b[:20]})
        body = a[1:] if spec.add_bos else a
        specials += bool(special & set(body))
        round_trip += ours.decode(a, skip_special_tokens=True) != text
    return {"file": path.name, "tokenizer": {"model": spec.model, "pre": spec.pre, "vocab": len(spec.tokens),
                                             "add_bos": spec.add_bos},
            "transformers_class": type(ref).__name__, "texts": len(texts), "ids_differ": diff,
            "round_trip_failures": round_trip, "texts_with_special_ids": specials, "examples": examples,
            "build_s": round(build_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--out", default="benchmarks/results/gguf_tokenizer_check.json")
    a = ap.parse_args(argv)
    texts = sentences()
    t0 = time.perf_counter()
    result = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d"), "machine": cpu_model(), "versions": versions(),
              "models": {m: check(m, texts) for m in a.models.split(",")}}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    for m, r in result["models"].items():
        print(f"{m}: {r['texts']} texts, ids differ {r['ids_differ']}, round-trip failures "
              f"{r['round_trip_failures']}, texts with special ids {r['texts_with_special_ids']} "
              f"(transformers: {r['transformers_class']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
