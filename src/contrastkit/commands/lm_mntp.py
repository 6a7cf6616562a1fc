"""``contrastkit lm mntp``: masked next-token prediction, LLM2Vec's second stage (see contrastkit.lm.mntp)."""

from __future__ import annotations

import argparse
import json

from ._lm import add_run_options, lm_group


def _cmd_mntp(args: argparse.Namespace) -> int:
    from ..lm.mntp import build_mntp_config, load_mntp_config, train_mntp
    from ..run import command_config, describe

    config = command_config(args.config, args.resume, args.set, args.allow_change, load=load_mntp_config,
                            build=build_mntp_config,
                            usage="lm mntp needs a CONFIG file (recipes/llm2vec-1-mntp.yaml), or --resume RUN_DIR")
    result = train_mntp(config, resume=args.resume is not None, allow_changes=args.allow_change)
    print(json.dumps(describe(result), indent=2))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``lm mntp`` (creating the ``lm`` group if no other command module did)."""
    p = lm_group(sub, groups).add_parser(
        "mntp", help="masked next-token prediction (LLM2Vec stage 2)",
        description="Train a decoder LM (usually with model.bidirectional: true and LoRA) to predict each masked "
                    "token from the previous position's output through its LM head (BehnamGhader et al., 2024, "
                    "LLM2Vec). Then run unsupervised SimCSE on <output_dir>/model with contrastkit train "
                    "(recipes/llm2vec-2-simcse.yaml).")
    add_run_options(p, "MNTP", "recipes/llm2vec-1-mntp.yaml")
    p.set_defaults(func=_cmd_mntp)
