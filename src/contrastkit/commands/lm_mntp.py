"""``contrastkit lm mntp``: masked next-token prediction, LLM2Vec's second stage (see contrastkit.lm.mntp)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_mntp(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..lm.mntp import load_mntp_config, resume_mntp_config, train_mntp
    from ..run import describe

    config_path, run_dir = args.config, args.resume if isinstance(args.resume, str) else None
    if config_path is None and run_dir is not None and Path(run_dir).is_file():
        config_path, run_dir = run_dir, None
    if args.allow_change and args.resume is None:
        raise ConfigError("--allow-change applies only with --resume")
    if config_path is None and run_dir is None:
        raise ConfigError("lm mntp needs a CONFIG file (recipes/llm2vec-1-mntp.yaml), or --resume RUN_DIR")
    if config_path is None:
        config = resume_mntp_config(run_dir, args.set)
    else:
        config = load_mntp_config(config_path, args.set)
        if run_dir is not None:
            config = config.model_copy(update={"train": config.train.model_copy(update={"output_dir": run_dir})})
    result = train_mntp(config, resume=args.resume is not None, allow_changes=args.allow_change)
    print(json.dumps(describe(result), indent=2))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``lm mntp`` (creating the ``lm`` group if no other command module did)."""
    if "lm" not in groups:
        lm = sub.add_parser("lm", help="language-model stages (decoder LMs as encoders)")
        groups["lm"] = lm.add_subparsers(dest="lm_command", required=True, metavar="LM_COMMAND")
    p = groups["lm"].add_parser(
        "mntp", help="masked next-token prediction (LLM2Vec stage 2)",
        description="Train a decoder LM (usually with model.bidirectional: true and LoRA) to predict each masked "
                    "token from the previous position's output through its LM head (BehnamGhader et al., 2024, "
                    "LLM2Vec). Then run unsupervised SimCSE on <output_dir>/model with contrastkit train "
                    "(recipes/llm2vec-2-simcse.yaml).")
    p.add_argument("config", nargs="?", help="YAML MNTP config (recipes/llm2vec-1-mntp.yaml); not needed with "
                                             "--resume RUN_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=50 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue from the latest checkpoint of RUN_DIR (its saved config.yaml) or of the "
                        "config's train.output_dir")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a changed config key or section (repeatable)")
    p.set_defaults(func=_cmd_mntp)
