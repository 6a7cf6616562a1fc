"""Open-ended generation on held-out human text: greedy, nucleus, contrastive search, contrastive decoding, DoLa.

Prompts are the first ``--prompt-tokens`` (32) tokens of passages of held-out human text, the human
continuation (the next ``--max-new-tokens`` tokens) is MAUVE's reference, as in SimCTG's open-ended
generation table (Su et al., 2022) on data available offline:

* ``bible`` (default): the World English Bible text of the held-out books (Ruth, Job, Proverbs, Acts, Hebrews,
  Revelation; never in any contrastkit training pair), consecutive verses of a chapter joined into passages;
* ``senteval``: SentEval's MR / SUBJ / CR / MPQA sentences, consecutive sentences of one file joined (their
  order within a file is the corpus order, so a passage mixes reviews; a harder, noisier reference).

For each LM (``--models``: offline aliases or causal LM dirs, e.g. a SimCTG run's ``model/``) and strategy:
rep-2/3/4 and diversity (SimCTG's definitions, whitespace tokens), MAUVE (mauve-text, features = the
continuations' embeddings from the contrastkit encoder ``--encoder``), coherence (cosine of prompt and
continuation embeddings, same encoder), generation perplexity under the LM itself, and tokens/s; sampling
strategies are run with ``--seeds`` (mean and std). Strategies and their parameters:

* greedy;  nucleus: top_p 0.95 (Holtzman et al., 2020);  contrastive_search: penalty_alpha 0.6, top_k 4;
* contrastive_decoding: alpha 0.1, beta 0.5 (O'Brien & Lewis, 2023), the amateur the expert's early-exit layer
  ``--cd-layer`` (default: half the depth; the offline LMs have no same-vocabulary smaller sibling);
* dola: dola_layers 'low', repetition_penalty 1.2 (Chuang et al., 2024).

    python benchmarks/generation_quality.py                       # >= 500 prompts, both LMs (hours on a CPU)
    python benchmarks/generation_quality.py --limit 8 --max-new-tokens 16 --seeds 0 --out ...-smoke.json
    python benchmarks/generation_quality.py --dtype bf16 --resume   # bf16 weights; a killed run goes on
    python benchmarks/generation_quality.py --print-only            # the table of the result file

Writes ``benchmarks/results/generation_quality.json`` (``--out``; rewritten after every row) with the machine
and package versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

STRATEGIES: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (contrastkit strategy, parameters, sampled)
    "greedy": ("greedy", {}, False),
    "nucleus": ("sample", {"top_p": 0.95}, True),
    "contrastive_search": ("contrastive_search", {"penalty_alpha": 0.6, "top_k": 4}, False),
    "contrastive_decoding": ("contrastive_decoding", {"alpha": 0.1, "beta": 0.5}, False),
    "dola": ("dola", {"dola_layers": "low", "repetition_penalty": 1.2}, False),
}


def passages(source: str, min_words: int) -> list[str]:
    """Held-out human passages of at least ``min_words`` words, in corpus order."""
    texts: list[list[str]] = []
    if source == "bible":
        from contrastkit.data.embedded import HELDOUT_BOOKS, bible_verses

        held = set(HELDOUT_BOOKS)
        groups: dict[tuple[str, int], list[str]] = {}
        for v in bible_verses():
            if v.book in held and v.web.strip():
                groups.setdefault((v.book, v.chapter), []).append(v.web.strip())
        texts = list(groups.values())
    elif source == "senteval":
        from contrastkit.evaluation.senteval import resolve_senteval_dir

        root = resolve_senteval_dir(None, needed_for="generation prompts")
        for rel in ("MR/rt-polarity.pos", "MR/rt-polarity.neg", "SUBJ/subj.objective", "SUBJ/subj.subjective",
                    "CR/custrev.pos", "CR/custrev.neg"):
            path = root / rel
            if path.is_file():
                texts.append([ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
                              if ln.strip()])
    else:
        raise SystemExit(f"unknown --source {source!r}")
    out = []
    for sentences in texts:
        cur: list[str] = []
        for s in sentences:
            cur.append(s)
            if sum(len(x.split()) for x in cur) >= min_words:
                out.append(" ".join(cur))
                cur = []
    return out


def make_prompts(tok: Any, texts: list[str], n: int, prompt_tokens: int, cont_tokens: int
                 ) -> tuple[list[str], list[str]]:
    """(prompts, human continuations): the first ``prompt_tokens`` tokens of each passage with at least
    ``prompt_tokens + cont_tokens`` tokens, and its next ``cont_tokens`` tokens, decoded."""
    prompts, humans = [], []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) < prompt_tokens + cont_tokens:
            continue
        prompts.append(tok.decode(ids[:prompt_tokens]))
        humans.append(tok.decode(ids[prompt_tokens:prompt_tokens + cont_tokens]))
        if len(prompts) == n:
            break
    return prompts, humans


def score(texts: list[str], prompts: list[str], humans: list[str], encoder: Any, model: Any, tok: Any,
          human_features: Any, mauve_buckets: Any) -> dict[str, float]:
    """The table's metrics of one set of continuations."""
    from contrastkit.generation import metrics

    out = metrics.repetition_report(texts)
    q = encoder.encode(texts, batch_size=64)
    try:
        out["mauve"] = float(metrics.mauve(human_features, q, num_buckets=mauve_buckets).mauve)
    except Exception as e:  # noqa: BLE001 - too few texts for k-means: recorded, not fatal
        out["mauve"] = float("nan")
        out["mauve_error"] = str(e)[:200]  # type: ignore[assignment]
    out["coherence"] = float(metrics.coherence(encoder, prompts, texts))
    nonempty = [(p, t) for p, t in zip(prompts, texts) if t.strip()]
    out["gen_ppl"] = float(metrics.generation_perplexity(model, tok, [p for p, _ in nonempty],
                                                         [t for _, t in nonempty])) if nonempty else float("nan")
    return out


def run_model(label: str, name: str, args: argparse.Namespace, encoder: Any, texts: list[str],
              emit: Any, done: dict[tuple[Any, ...], dict[str, Any]] | None = None) -> None:
    """Every strategy (and seed) on one LM; ``emit(row)`` records each row as it finishes; rows already in
    ``done`` (keyed by model, strategy, seed) are kept, not rerun."""
    import torch

    from contrastkit.generation import generate
    from contrastkit.lm import load_causal_lm

    done = done or {}
    model, tok = load_causal_lm(name, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    n_layers = model.config.get_text_config().num_hidden_layers
    prompts, humans = make_prompts(tok, texts, args.limit, args.prompt_tokens, args.max_new_tokens)
    if not prompts:
        raise SystemExit("no passage is long enough; lower --prompt-tokens / --max-new-tokens")
    human_features = encoder.encode(humans, batch_size=64)
    buckets = args.mauve_buckets if args.mauve_buckets else max(2, len(prompts) // 10)
    if (label, "human", None) not in done:
        human = score(humans, prompts, humans, encoder, model, tok, human_features, buckets)
        human.pop("mauve", None)
        emit({"model": label, "strategy": "human", "n_prompts": len(prompts), **human})
    cd_layer = args.cd_layer if args.cd_layer is not None else n_layers // 2
    for strat in args.strategies:
        kind, params, sampled = STRATEGIES[strat]
        params = dict(params)
        if kind == "contrastive_decoding":
            params["amateur_layer"] = cd_layer
        runs = []
        for seed in (args.seeds if sampled else [None]):
            kw = dict(params, **({"seed": seed} if seed is not None else {}))
            if (label, strat, seed) in done:
                runs.append({k: v for k, v in done[label, strat, seed].items() if isinstance(v, float)})
                continue
            start = time.perf_counter()
            with torch.inference_mode():
                outputs = generate(model, tok, prompts, strategy=kind, max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, **kw)
            seconds = time.perf_counter() - start
            conts = [c.text for c in outputs]
            row = score(conts, prompts, humans, encoder, model, tok, human_features, buckets)
            row["tokens_per_s"] = sum(len(c.token_ids) for c in outputs) / seconds
            row["gen_seconds"] = round(seconds, 2)
            runs.append(row)
            emit({"model": label, "strategy": strat, "seed": seed, "params": kw, "n_prompts": len(prompts),
                  **row, "example": {"prompt": prompts[0], "continuation": conts[0]}})
        if len(runs) > 1 and (label, strat, "mean") not in done:
            keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
            summary = {k: statistics.mean(r[k] for r in runs) for k in keys}
            summary |= {f"{k}_std": statistics.stdev(r[k] for r in runs) for k in keys}
            emit({"model": label, "strategy": strat, "seed": "mean", "params": params, "n_prompts": len(prompts),
                  **summary})


COLUMNS = (("rep-2", "rep-2", 2), ("rep-3", "rep-3", 2), ("rep-4", "rep-4", 2), ("diversity", "diversity", 3),
           ("MAUVE", "mauve", 3), ("coherence", "coherence", 3), ("gen. ppl", "gen_ppl", 2),
           ("tok/s", "tokens_per_s", 0))


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (model, strategy), models in run order; a sampled strategy's cells are mean ± std over
    its seeds (the number of seeds after its name); the human continuations first, as the reference."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("seed") != "mean":
            groups.setdefault((r["model"], r["strategy"]), []).append(r)
    lines = ["| model | strategy | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    models = list(dict.fromkeys(m for m, _ in groups))
    order = ["human", *STRATEGIES]
    for (model, strategy), runs in sorted(groups.items(), key=lambda g: (models.index(g[0][0]),
                                                                         order.index(g[0][1]))):
        cells = []
        for _, key, digits in COLUMNS:
            values = [r[key] for r in runs if isinstance(r.get(key), float)]
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(f"{values[0]:.{digits}f}")
            else:
                cells.append(f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}")
        name = f"{strategy} ({len(runs)} seeds)" if len(runs) > 1 else strategy
        lines.append(f"| {model} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"],
                    help="causal LMs: aliases or dirs; LABEL=PATH names one")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--source", default="bible", choices=["bible", "senteval"])
    ap.add_argument("--limit", type=int, default=500, help="prompts (>= 500 for the table)")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="continuation length (SimCTG: 256)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the sampling strategies")
    ap.add_argument("--cd-layer", type=int, default=None, help="contrastive decoding's early-exit amateur layer")
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2", help="contrastkit encoder for MAUVE and coherence")
    ap.add_argument("--mauve-buckets", type=int, default=None, help="k-means clusters (default: prompts / 10)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="the LMs' weights and activations")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of --out written with the same settings; run only the missing ones")
    ap.add_argument("--print-only", action="store_true", help="print the table of --out and exit")
    ap.add_argument("--out", default="benchmarks/results/generation_quality.json")
    args = ap.parse_args()
    if args.print_only:
        print(table(json.loads(Path(args.out).read_text())["rows"]))
        return

    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.fsutil import atomic_write_bytes

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    encoder = Encoder.from_pretrained(args.encoder)
    texts = passages(args.source, min_words=int((args.prompt_tokens + args.max_new_tokens) * 1.2))
    out: dict[str, Any] = {"benchmark": "generation_quality", "date": str(date.today()), "machine": cpu_model(),
                           "threads": torch.get_num_threads(), "versions": versions(["mauve-text"]),
                           "args": vars(args), "rows": []}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    if args.resume and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        same = ("source", "limit", "prompt_tokens", "max_new_tokens", "cd_layer", "encoder", "mauve_buckets",
                "dtype")
        changed = [k for k in same if previous["args"].get(k) != out["args"][k]]
        if changed:
            ap.error(f"--resume: {args.out} was written with other settings ({', '.join(changed)})")
        out["rows"] = previous["rows"]
        done = {(r["model"], r["strategy"], r.get("seed")): r for r in out["rows"]}

    def emit(row: dict[str, Any]) -> None:
        out["rows"].append(row)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        atomic_write_bytes(Path(args.out), json.dumps(out, indent=2).encode())
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k not in ("example", "params")}), flush=True)

    for spec in args.models:
        label, _, path = spec.partition("=") if "=" in spec else (spec, "", spec)
        run_model(label, path, args, encoder, texts, emit, done)
    print("\n" + table(out["rows"]))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
