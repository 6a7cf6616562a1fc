"""Does the demo's adaptation keep general quality? Base vs plain fine-tuning vs weight-space merging.

Runs the demo as ``contrastkit demo`` runs it (:func:`contrastkit.demo.run_demo`, full settings,
its default ``merge_alpha``), which evaluates the base model and the demo's saved model on the
held-out KJV->WEB retrieval and the general-quality panel (7-task STS average, STS-B test,
SentEval transfer CR/TREC/MRPC, STSB/SICK/MRPC paraphrase retrieval, Lee documents at 256
tokens). Then it evaluates the same panel on the other options, all from that one training run:

* ``finetuned``: the plain fine-tuned weights (``merge_alpha=1``; the demo's default before);
* ``wise-ft a``: ``base + a x (fine-tuned - base)`` for each ``--alphas`` value.

Writes ``benchmarks/results/demo_general_quality.json`` (after each model, so a killed run keeps
what it measured) with the command, machine, versions and date.

    python benchmarks/demo_general_quality.py [--alphas 0.3 0.7] [--out benchmarks/results/demo_general_quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _row(result: dict, base: dict) -> dict:
    """Metric -> value for one model (x100), with the deltas against the base."""
    from contrastkit.demo import _ROWS

    vals = {}
    for label, section, key in _ROWS:
        if section in result and key in result[section]:
            vals[label] = round(float(result[section][key]), 2)
    deltas = {k: round(v - float(base[k]), 2) for k, v in vals.items() if k in base}
    general = [d for k, d in deltas.items() if k.startswith("general:")]
    return {"metrics": vals, "delta": deltas, "worst_general_delta": min(general) if general else None,
            "eval_s": result.get("seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", nargs="*", type=float, default=[0.3, 0.7],
                    help="WiSE-FT shares evaluated besides the demo's default")
    ap.add_argument("--output-dir", default="runs/bench_demo_general_quality")
    ap.add_argument("--out", default="benchmarks/results/demo_general_quality.json")
    args = ap.parse_args()

    import torch

    from contrastkit import demo

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    record: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "date": date.today().isoformat(),
                    "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
                    "versions": versions(), "default_merge_alpha": demo.DEFAULT_MERGE_ALPHA,
                    "tolerance": demo.GENERAL_TOLERANCE, "models": {}}

    def save() -> None:
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out_path)

    t0 = time.perf_counter()
    report = demo.run_demo(args.output_dir)  # exactly the demo's default
    demo_wall = time.perf_counter() - t0
    base = _row(report["before"], {})["metrics"]
    record["demo"] = {"wall_s": round(demo_wall, 1), "timings_s": report["timings_s"],
                      "torch_threads": report["torch_threads"], "verdict": report["general_verdict"],
                      "saved_model": report["adaptation"], "general_note": report["general_note"],
                      "train_steps": report["training"]["steps"]}
    record["models"]["base"] = _row(report["before"], base)
    alpha = report["adaptation"]["merge_alpha"]
    record["models"][f"demo default (wise-ft {alpha})"] = _row(report["after"], base)
    save()

    settings = demo.FULL
    general = demo.load_general_tasks(True)
    verses = demo.bible_verses()
    eval_set = demo._heldout_eval_set(verses, settings)
    finetuned = report["training"]["model_dir"]
    base_path = report["model"]["path"]
    torch.set_num_threads(report["torch_threads"])
    options: list[tuple[str, str]] = [("fine-tuned (merge_alpha 1, the old default)", finetuned)]
    for a in args.alphas:
        if a != alpha:
            options.append((f"wise-ft {a}", str(demo.merge_with_base(finetuned, base_path, a,
                                                                     Path(args.output_dir) / f"wise-ft-{a}"))))
    for name, path in options:
        t1 = time.perf_counter()
        res = demo._evaluate(path, eval_set, general, settings)
        record["models"][name] = _row(res, base)
        print(f"{name}: worst general delta {record['models'][name]['worst_general_delta']}, "
              f"{time.perf_counter() - t1:.0f} s", flush=True)
        save()
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    save()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
