"""``contrastkit generate``: continue prompts (a file or stdin) with a decoding strategy; JSONL out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# CLI flag -> decoder parameter (argparse dest == parameter name)
_PARAMS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "typical_p", "penalty_alpha",
           "repetition_penalty", "alpha", "beta", "amateur_temperature", "amateur_layer", "dola_layers", "seed",
           "contrast_lambda")


def read_prompts(source: str, field: str = "prompt") -> list[str]:
    """Prompts from a text file (one per line) or JSONL (objects with ``field``); ``-`` reads stdin.

    Blank lines are skipped and counted on stderr; a bad JSONL line is an error naming the file and line.
    """
    from ..errors import DataError

    name = "<stdin>" if source == "-" else source
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise DataError(f"cannot read prompts: {err.strerror}", path=source) from None
    jsonl = source.endswith(".jsonl") or next((ln.lstrip().startswith("{") for ln in lines if ln.strip()), False)
    prompts, blank = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            blank += 1
            continue
        if not jsonl:
            prompts.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"not a JSON object ({err.msg})", path=name, line=number) from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
            raise DataError(f"expected an object with a string field '{field}'", path=name, line=number)
        prompts.append(obj[field])
    if blank:
        print(f"skipped {blank} blank line(s) of {name}", file=sys.stderr)
    if not prompts:
        raise DataError("no prompts", path=name)
    return prompts


def _dola_layers(text: str) -> Any:
    if text in ("low", "high"):
        return text
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'low', 'high' or comma-separated layer indices, got {text!r}")


def _cmd_generate(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..errors import ConfigError
    from ..generation import generate, strategy_parameters
    from ..lm import load_causal_lm

    params = {k: getattr(args, k) for k in _PARAMS if getattr(args, k) is not None}
    accepted = strategy_parameters(args.strategy)
    unknown = [k for k in params if k not in accepted]
    if args.amateur is not None and "amateur" not in accepted:
        unknown.append("amateur")
    if args.contrastive_input is not None and "contrastive_prompts" not in accepted:
        unknown.append("contrastive_input")
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"--strategy {args.strategy} takes no {flags}")
    prompts = read_prompts(args.input, args.prompt_field)
    if "contrastive_prompts" in accepted:
        if args.contrastive_input is None:
            raise ConfigError(f"--strategy {args.strategy} needs --contrastive-input: one contrastive prompt per "
                              "prompt (the prompt with one attribute changed)")
        params["contrastive_prompts"] = read_prompts(args.contrastive_input, args.prompt_field)
        if len(params["contrastive_prompts"]) != len(prompts):
            raise ConfigError(f"--contrastive-input holds {len(params['contrastive_prompts'])} prompts for "
                              f"{len(prompts)} prompts; give one per prompt")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model, tok = load_causal_lm(args.model, device=args.device, dtype=dtype)
    if args.amateur is not None:
        amateur, amateur_tok = load_causal_lm(args.amateur, device=args.device, dtype=dtype)
        if amateur_tok.get_vocab() != tok.get_vocab():
            raise ConfigError(f"--amateur {args.amateur} has another vocabulary than --model {args.model}; "
                              "contrastive decoding needs the same tokenizer (or use --amateur-layer)")
        params["amateur"] = amateur
    start = time.perf_counter()
    done = generate(model, tok, prompts, strategy=args.strategy, batch_size=args.batch_size, **params)
    seconds = time.perf_counter() - start
    lines = [json.dumps({"index": i, "prompt": p, "completion": c.text, "strategy": args.strategy,
                         "num_tokens": len(c.token_ids), "finish_reason": c.finish_reason}, ensure_ascii=False)
             for i, (p, c) in enumerate(zip(prompts, done))]
    if "contrastive_prompts" in params:  # the contrastive prompt beside its prompt
        lines = [line[:-1] + ", " + json.dumps({"contrastive_prompt": q}, ensure_ascii=False)[1:]
                 for line, q in zip(lines, params["contrastive_prompts"])]
    text = "\n".join(lines) + "\n"
    if args.output:
        from ..fsutil import atomic_write_bytes

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    tokens = sum(len(c.token_ids) for c in done)
    print(f"generated {tokens} tokens for {len(prompts)} prompt(s) in {seconds:.1f} s "
          f"({tokens / max(seconds, 1e-9):.1f} tokens/s)", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``generate`` command."""
    from ..generation import STRATEGIES

    g = sub.add_parser("generate", help="continue prompts with a decoding strategy (JSONL out)",
                       description="Continue each prompt with a causal LM (a dir, hub name, .gguf file or alias "
                                   "such as smollm2-135m / gemma3-270m). Parameters not given keep the decoder's "
                                   "defaults; one the strategy does not take is an error.")
    g.add_argument("--model", required=True, help="causal LM: dir, hub name, .gguf file or offline alias")
    g.add_argument("--strategy", choices=list(STRATEGIES), default="greedy",
                   help="decoder (top-k, nucleus and typical sampling: 'sample' with --top-k/--top-p/--typical-p)")
    g.add_argument("--input", default="-", help="prompts: a text file (one per line), JSONL, or - for stdin")
    g.add_argument("--prompt-field", default="prompt", help="field holding the prompt in JSONL input")
    g.add_argument("--output", help="JSONL file to write (default: stdout)")
    g.add_argument("--batch-size", type=int, default=16, help="prompts per batch (left-padded)")
    g.add_argument("--device", default=None, help="torch device (default: cpu)")
    g.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="weights and activations (bf16: faster on CPUs with AMX/AVX-512 BF16 and on GPUs)")
    g.add_argument("--max-new-tokens", type=int, help="new tokens per prompt at most (default 32)")
    g.add_argument("--do-sample", action="store_const", const=True,
                   help="contrastive_decoding / dola: sample from the contrast scores instead of the argmax")
    g.add_argument("--temperature", type=float, help="sampling temperature")
    g.add_argument("--top-k", type=int, help="sample: keep the k likeliest tokens; contrastive_search: candidates")
    g.add_argument("--top-p", type=float, help="nucleus sampling mass")
    g.add_argument("--typical-p", type=float, help="locally typical sampling mass")
    g.add_argument("--penalty-alpha", type=float, help="contrastive_search: weight of the degeneration penalty")
    g.add_argument("--repetition-penalty", type=float, help="CTRL repetition penalty (dola default 1.2)")
    g.add_argument("--amateur", help="contrastive_decoding: a smaller causal LM with the same vocabulary")
    g.add_argument("--amateur-layer", type=int, help="contrastive_decoding: the expert's early-exit layer as amateur")
    g.add_argument("--alpha", type=float, help="contrastive_decoding / dola: plausibility threshold (0.1)")
    g.add_argument("--beta", type=float, help="contrastive_decoding: amateur weight (0.5; 0 = greedy)")
    g.add_argument("--amateur-temperature", type=float, help="contrastive_decoding: amateur temperature")
    g.add_argument("--dola-layers", type=_dola_layers, help="dola: 'low', 'high' or comma-separated layers")
    g.add_argument("--contrastive-input", help="contrastive_input_decoding: the contrastive prompts (same format "
                                               "as --input, one per prompt)")
    g.add_argument("--contrast-lambda", type=float, help="contrastive_input_decoding: weight of the contrast (1)")
    g.add_argument("--seed", type=int, help="seed of the sampling generator")
    g.set_defaults(func=_cmd_generate)
