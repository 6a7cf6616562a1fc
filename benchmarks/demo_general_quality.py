"""Does the demo's adaptation keep general quality? Base vs plain fine-tuning vs weight-space merging.

Runs the demo as ``contrastkit demo`` runs it (:func:`contrastkit.demo.run_demo`, full settings,
its default ``merge_alpha``), which evaluates the base model and the demo's saved model on the
held-out KJV->WEB retrieval and the general-quality panel (7-task STS average, STS-B test,
SentEval transfer CR/TREC/MRPC, STSB/SICK/MRPC paraphrase retrieval, Lee documents at 256
tokens). Then it evaluates the same panel on the other options, all from that one training run:

* ``finetuned``: the plain fine-tuned weights (``merge_alpha=1``; the demo's default before);
* ``wise-ft a``: ``base + a x (fine-tuned - base)`` for each ``--alphas`` value.

and, each with a training run of its own (same data, seed and steps, no merge):

* ``l2-sp L`` (``--l2sp L``): L2-SP (Li et al., 2018, "Explicit inductive bias for transfer learning
  with convolutional networks", ICML): ``L * ||theta - theta_base||^2`` added to the loss, as the
  gradient ``2 L (theta - theta_base)`` added before each optimizer step (a negatives-source hook,
  so the trainer is unchanged);
* ``lora R:LR`` (``--lora R:LR``): LoRA adapters (Hu et al., 2021) of rank R (alpha 2R, every linear
  layer) trained at learning rate LR instead of the whole model (``model.lora``), saved merged;
* ``mix-general F`` (``--mix-general F``): a share F of the 160 x 64 training rows are general-English
  sentences (WordNet 3.0 definitions and examples, Debian ``wordnet-base``) paired with themselves
  (SimCSE's unsupervised positives: dropout makes the two views differ), shuffled among the verse pairs.

``--variants-only`` runs only the training variants, adding them to ``--out`` (a new file, or an
existing one from a run without ``--variants-only``).

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


def _l2sp_negatives(strength: float):  # noqa: ANN202 - a NegativeSource
    """In-batch negatives plus the L2-SP gradient toward the weights at ``setup`` (the base model)."""
    import torch

    from contrastkit.training.negatives.in_batch import InBatchNegatives

    class L2SPInBatch(InBatchNegatives):
        def setup(self, encoder: torch.nn.Module) -> None:
            self.start = {n: p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad}

        def before_optimizer_step(self, encoder: torch.nn.Module) -> None:
            with torch.no_grad():
                for n, p in encoder.named_parameters():
                    if p.grad is not None and n in self.start:
                        p.grad.add_(p.detach() - self.start[n], alpha=2.0 * strength)

    return L2SPInBatch()


def _variant(name: str, output_dir: Path, *, l2sp: float | None = None, mix: float | None = None,
             lora: tuple[int, float] | None = None) -> dict:
    """One training variant through run_demo (no merge), with the patches it needs."""
    import random
    from unittest import mock

    from contrastkit import config, demo, run

    patches = []
    if lora is not None:  # LoRA adapters (model.lora) at rank r and learning rate lr, saved merged
        r, lr = lora
        build = config.build_config

        def build_with_lora(tree: dict, *args, **kwargs):  # noqa: ANN202 - the demo's own config, plus LoRA
            tree = {**tree, "model": {**tree["model"], "lora": {"r": r, "alpha": float(2 * r)}},
                    "train": {**tree["train"], "lr": lr}}
            return build(tree, *args, **kwargs)

        patches.append(mock.patch.object(config, "build_config", build_with_lora))
    if l2sp is not None:
        patches.append(mock.patch.object(run, "build_negatives", lambda cfg: _l2sp_negatives(l2sp)))
    if mix is not None:
        from contrastkit.data.embedded import wordnet_sentences

        write = demo._write_pairs
        n_rows = demo.FULL.train_pairs

        def write_mixed(path: Path, verses: list, negatives: dict | None = None) -> None:
            write(path, verses, negatives)
            rng = random.Random(demo.FULL.seed)
            pool = wordnet_sentences()
            rows = path.read_text(encoding="utf-8").splitlines()
            n_general = int(round(mix * n_rows))
            general = [json.dumps({"anchor": t, "positive": t, "ref": "wordnet"}, ensure_ascii=False)
                       for t in rng.sample(pool, n_general)]
            mixed = rows[:n_rows - n_general] + general  # same rows in all: 160 steps of 64
            rng.shuffle(mixed)
            path.write_text("\n".join(mixed) + "\n", encoding="utf-8")

        patches.append(mock.patch.object(demo, "_write_pairs", write_mixed))
    for p in patches:
        p.start()
    try:
        t0 = time.perf_counter()
        report = demo.run_demo(output_dir, merge_alpha=1.0)
        wall = time.perf_counter() - t0
    finally:
        for p in patches:
            p.stop()
    return {"report": report, "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", nargs="*", type=float, default=[0.3, 0.7],
                    help="WiSE-FT shares evaluated besides the demo's default")
    ap.add_argument("--l2sp", nargs="*", type=float, default=[0.01, 0.1], help="L2-SP strengths (a run each)")
    ap.add_argument("--mix-general", nargs="*", type=float, default=[0.25],
                    help="shares of general (WordNet) rows (a run each)")
    ap.add_argument("--lora", nargs="*", default=[], metavar="R:LR",
                    help="LoRA adapters of rank R trained at lr LR instead of the full model (a run each), e.g. 8:5e-4")
    ap.add_argument("--variants-only", action="store_true",
                    help="only the training variants, added to the existing --out JSON")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse --output-dir's demo run and --out's rows; evaluate only the options not there yet")
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

    if args.variants_only:
        if out_path.is_file():
            old = json.loads(out_path.read_text())
            record = {**old, "variants_command": record["command"], "variants_date": record["date"],
                      "variants_load_avg_1m_at_start": record["machine"]["load_avg_1m_at_start"]}
        base = record["models"]["base"]["metrics"] if "base" in record["models"] else None
        variants = [(f"l2-sp {v}", {"l2sp": v}) for v in args.l2sp] + \
                   [(f"mix-general {v}", {"mix": v}) for v in args.mix_general] + \
                   [(f"lora {v}", {"lora": (int(v.split(":")[0]), float(v.split(":")[1]))}) for v in args.lora]
        for name, kw in variants:
            res = _variant(name, Path(args.output_dir) / name.replace(" ", "-"), **kw)
            if base is None:
                base = _row(res["report"]["before"], {})["metrics"]
                record["models"]["base"] = _row(res["report"]["before"], base)
            record["models"][name] = _row(res["report"]["after"], base) | {
                "demo_wall_s": res["wall_s"], "train_s": res["report"]["timings_s"]["train"]}
            print(f"{name}: worst general delta {record['models'][name]['worst_general_delta']}", flush=True)
            save()
        print(f"wrote {out_path}")
        return

    t0 = time.perf_counter()
    if args.reuse and out_path.is_file():  # evaluate more options on the stored run's fine-tuned model
        old = json.loads(out_path.read_text())
        record = {**old, "models": old["models"], "reuse_command": record["command"]}
        report = json.loads((Path(args.output_dir) / "report.json").read_text())
        demo_wall = old["demo"]["wall_s"]
    else:
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
        if name in record["models"]:
            continue
        t1 = time.perf_counter()
        res = demo._evaluate(path, eval_set, general, settings)
        record["models"][name] = _row(res, base)
        print(f"{name}: worst general delta {record['models'][name]['worst_general_delta']}, "
              f"{time.perf_counter() - t1:.0f} s", flush=True)
        save()
    if not args.reuse:
        record["wall_s"] = round(time.perf_counter() - t0, 1)
    save()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
