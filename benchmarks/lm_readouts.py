"""Training-free readouts of small LMs on the 7 SimCSE STS tasks (SimCSE/SentEval protocol, no training).

Every readout of ``contrastkit.encoders.readouts`` (PromptEOL, PromptEOL + in-context demonstration, MetaEOL,
Pretended CoT, Knowledge Enhancement, Contrastive Prompting, Token Prepending, Echo mean / last) beside the
plain poolings (mean, first_last_avg, last_token), for SmolLM2-135M-Instruct and Gemma-3-270m (offline aliases).

    python benchmarks/lm_readouts.py                                  # the full table (slow on 2 cores)
    python benchmarks/lm_readouts.py --limit 50 --models smollm2-135m # smoke run: 50 pairs per task
    python benchmarks/lm_readouts.py --sample 500 --tag sample500     # every row on 500 random pairs per task
    python benchmarks/lm_readouts.py --readouts prompt echo --params '{"echo": {"pool": "last"}}'
    python benchmarks/lm_readouts.py --print-only                     # the table of the result file (BENCHMARKS.md)

Readout parameters are the papers' defaults unless ``--params`` (JSON: name -> parameters) overrides them;
rows named ``name:key=value`` come from ``--variants`` (e.g. ``--variants 'prompt:layer=-2'``).
``--limit N`` keeps the first N scored pairs of each task (a quick check, not comparable to the papers).
Runs with the same settings may share the result file at the same time (say one per model, with ``--resume``).
Writes ``benchmarks/results/lm_readouts[-TAG].json`` and prints a Markdown table (Spearman x 100).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.encoders.readouts import READOUTS  # noqa: E402
from contrastkit.evaluation.cache import EmbeddingCache  # noqa: E402
from contrastkit.evaluation.senteval import STSTask, load_sts_task  # noqa: E402
from contrastkit.evaluation.sts import SIMCSE_TASKS, evaluate_sts  # noqa: E402
from contrastkit.fsutil import atomic_write_bytes  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MODELS = ("smollm2-135m", "gemma3-270m")
BASELINES = ("mean", "first_last_avg", "last_token")
# Echo appears twice (mean and last token over the second copy).
DEFAULT_ROWS = (*BASELINES, *(n for n in READOUTS if n != "echo"), "echo:pool=mean", "echo:pool=last")
SETTINGS = ("limit", "sample", "max_length", "precision")  # rows measured under other settings never mix
LABELS = {"prompt": "PromptEOL (last layer)", "prompt_icl": "PromptEOL + 1 demonstration (ICL)",
          "metaeol": "MetaEOL (8 meta-task prompts, last layer)", "pretended_cot": "Pretended CoT (layer -2)",
          "knowledge": "Knowledge Enhancement (layer -2)", "contrastive_prompt": "Contrastive Prompting",
          "token_prepending": "Token Prepending", "echo:pool=mean": "Echo, mean of 2nd copy",
          "echo:pool=last": "Echo, last token"}
SHORT = {"STSBenchmark": "STS-B", "SICKRelatedness": "SICK-R"}


def table(results: dict[str, dict[str, dict]]) -> str:
    """The Markdown table of a result file: one row per model x readout (papers' names), wall seconds and threads.

    A row still in progress shows its finished tasks, a dash for the rest and "(running)" for the average.
    """
    names = list(SIMCSE_TASKS)
    order = {label: i for i, label in enumerate(DEFAULT_ROWS)}
    lines = [f"| model | readout | {' | '.join(SHORT.get(n, n) for n in names)} | Avg. | s |",
             f"|---|---|{'---:|' * (len(names) + 2)}"]
    for model, rows in results.items():
        for label, r in sorted(rows.items(), key=lambda kv: order.get(kv[0], len(order))):
            cells = " | ".join(f"{r['scores'][n]:.2f}" if n in r["scores"] else "–" for n in names)
            avg = f"**{r['avg']:.2f}**" if "avg" in r else "(running)"
            threads = r.get("threads")
            secs = f"{r['seconds']:.0f}" + (f" ({threads} thread{'s' * (threads != 1)})" if threads else "")
            lines.append(f"| {model} | {LABELS.get(label, label)} | {cells} | {avg} | {secs} |")
    return "\n".join(lines)


def parse_row(row: str) -> tuple[str, dict[str, object]]:
    """'name' or 'name:key=value,key=value' -> (pooling, readout parameters); values are JSON or strings."""
    name, _, rest = row.partition(":")
    params: dict[str, object] = {}
    for item in filter(None, re.split(r",(?=\w+=)", rest)):  # commas inside [..] stay
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return name, params


def limited(task: STSTask, limit: int | None, sample: int | None = None) -> STSTask:
    """The first ``limit`` pairs of a task, or ``sample`` pairs drawn at random (seed 0, order kept); else all."""
    n = len(task)
    if sample is not None and sample < n:
        keep = sorted(random.Random(0).sample(range(n), sample))
        note = f"{sample} of {n} pairs drawn at random, seed 0 (--sample)"
    elif limit is not None and limit < n:
        keep, note = list(range(limit)), f"first {limit} pairs only (--limit)"
    else:
        return task
    return STSTask(task.name, [task.pairs[i] for i in keep], [task.scores[i] for i in keep],
                   [task.groups[i] for i in keep], task.source, [*task.notes, note])


def save(dest: Path, out: dict, mine: dict[str, set[str]]) -> None:
    """Write ``out`` to ``dest``, first taking in the rows other runs wrote there meanwhile (under a file lock).

    Two runs (say one per model) can then share one result file: each owns the rows it measures (``mine``);
    every other row is taken from the file as it stands, if the file has the same settings.
    """
    import fcntl

    with open(dest.with_name(dest.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.exists():
            on_disk = json.loads(dest.read_text())
            if all(on_disk.get(k) == out[k] for k in SETTINGS):
                for model, rows in on_disk["results"].items():
                    for label, row in rows.items():
                        if label not in mine.get(model, set()):
                            out["results"].setdefault(model, {})[label] = row  # type: ignore[index]
        atomic_write_bytes(dest, json.dumps(out, indent=2).encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="model aliases, paths or .gguf files")
    ap.add_argument("--readouts", nargs="+", default=list(DEFAULT_ROWS),
                    help="rows: a pooling name, optionally 'name:key=value,...' readout parameters")
    ap.add_argument("--variants", nargs="*", default=[], help="extra rows appended to --readouts")
    ap.add_argument("--params", default="{}", help="JSON: readout name -> parameters applied to its rows")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each task (quick runs)")
    ap.add_argument("--sample", type=int, default=None,
                    help="N pairs of each task drawn at random (seed 0): a cheaper table whose rows stay comparable")
    ap.add_argument("--max-length", type=int, default=512, help="token limit; texts are shortened, never templates")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--data-dir", default=None, help="SentEval data root (default: the usual places)")
    ap.add_argument("--tag", default="", help="suffix of the result file")
    ap.add_argument("--print-only", action="store_true", help="print the result file's table and exit")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in the result file (same settings) and run only the missing ones")
    args = ap.parse_args(argv)
    dest = RESULTS / f"lm_readouts{'-' + args.tag if args.tag else ''}.json"
    if args.print_only:
        if not dest.exists():
            ap.error(f"--print-only: no result file {dest}")
        results = json.loads(dest.read_text())["results"]
        print(table(results))
        sample = RESULTS / "lm_readouts-sample500.json"
        if sample.exists() and dest != sample:  # how far each finished row is from its 500-pair figure
            other = json.loads(sample.read_text())["results"]
            diffs = [r["avg"] - other[m][label]["avg"] for m, rows in results.items() for label, r in rows.items()
                     if "avg" in r and "avg" in other.get(m, {}).get(label, {})]
            if diffs:
                print(f"\nvs {sample.name}: {len(diffs)} rows, differences {min(diffs):+.2f} to {max(diffs):+.2f}, "
                      f"mean |difference| {sum(map(abs, diffs)) / len(diffs):.2f}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = json.loads(args.params)
    rows = [parse_row(r) for r in [*args.readouts, *args.variants]]
    tasks = [limited(load_sts_task(t, args.data_dir), args.limit, args.sample) for t in SIMCSE_TASKS]
    out: dict[str, object] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "protocol": "SimCSE STS: cosine, Spearman x 100, STS12-16 'all', STS-B and SICK-R test; no training",
        "limit": args.limit, "sample": args.sample, "max_length": args.max_length, "precision": args.precision,
        "batch_size": args.batch_size, "machine": cpu_model(), "threads": torch.get_num_threads(),
        "versions": versions(), "results": {}}
    if args.resume and dest.exists():
        previous = json.loads(dest.read_text())
        same = all(previous.get(k) == out[k] for k in SETTINGS)
        if not same:
            ap.error(f"--resume: {dest} was written with other settings (limit, sample, max_length or precision)")
        out["results"] = previous["results"]
    results: dict[str, dict[str, dict[str, object]]] = out["results"]  # type: ignore[assignment]
    mine: dict[str, set[str]] = {}  # the rows this run measures (save() keeps everyone else's)
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for model in args.models:
        results.setdefault(model, {})
        for name, params in rows:
            label = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
            row = results[model].get(label)
            if row is not None and "avg" in row:
                continue
            # A row in progress keeps its finished tasks: a killed run resumes at the next task (--resume).
            row = row or {"scores": {}, "seconds": 0.0, "threads": torch.get_num_threads()}
            if str(row.get("threads")).split("+")[-1] != str(torch.get_num_threads()):  # resumed on other threads
                row["threads"] = f"{row['threads']}+{torch.get_num_threads()}"
            machine = row.get("machine", "unrecorded" if row["scores"] else cpu_model())
            row["machine"] = machine if machine.split(" + ")[-1] == cpu_model() else f"{machine} + {cpu_model()}"
            readout = {**overrides.get(name, {}), **params} if name in READOUTS else None
            t0 = time.perf_counter()
            enc = Encoder.from_pretrained(model, pooling=name, max_length=args.max_length, readout=readout)
            enc.eval()
            row["readout"] = enc.readout.params if enc.readout is not None else None

            def encode(texts: list[str], enc: Encoder = enc):  # noqa: ANN202
                return enc.encode(texts, batch_size=args.batch_size, precision=args.precision)

            cached = EmbeddingCache(encode)  # a sentence shared by two tasks is encoded once
            for task in tasks:
                if task.name in row["scores"]:
                    continue
                row["scores"][task.name] = round(evaluate_sts(cached, [task]).scores[task.name], 2)
                row["seconds"] = round(row["seconds"] + time.perf_counter() - t0, 1)
                t0 = time.perf_counter()
                results[model][label] = row
                mine.setdefault(model, set()).add(label)
                save(dest, out, mine)  # after every task: a killed run keeps what it measured
            row["avg"] = round(sum(row["scores"].values()) / len(row["scores"]), 2)
            print(f"{model:14s} {label:28s} avg {row['avg']:6.2f}  ({row['seconds']:.0f} s)", flush=True)
            save(dest, out, mine)
            del enc, cached
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    save(dest, out, mine)
    print("\n" + table(out["results"]))  # type: ignore[arg-type]
    print(f"\nwrote {dest} ({out['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
