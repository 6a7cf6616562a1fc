"""``contrastkit lm simctg``: fine-tune a causal LM with SimCTG's contrastive token loss (see contrastkit.lm.simctg)."""

from __future__ import annotations

import argparse
import json

from ._lm import add_run_options, lm_group


def _cmd_simctg(args: argparse.Namespace) -> int:
    from ..lm.simctg import build_simctg_config, load_simctg_config, train_simctg
    from ..run import command_config

    config = command_config(args.config, args.resume, args.set, args.allow_change, load=load_simctg_config,
                            build=build_simctg_config,
                            usage="lm simctg needs a CONFIG file (recipes/simctg-smollm2.yaml), or --resume RUN_DIR")
    result = train_simctg(config, resume=args.resume is not None, allow_changes=args.allow_change)
    print(json.dumps({"output_dir": str(result.output_dir), "model_dir": str(result.model_dir),
                      "steps": result.steps, "seconds": round(result.seconds, 1),
                      "last": {k: round(v, 4) for k, v in result.last.items()}}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``lm simctg``."""
    p = lm_group(sub, groups).add_parser(
        "simctg", help="SimCTG: fine-tune a causal LM with MLE + the token-level contrastive loss",
        description="Fine-tune a causal LM on plain text with L_MLE + L_CL, SimCTG's token-level contrastive "
                    "margin loss (Su et al., 2022), which makes its token representations more isotropic; the "
                    "result (<output_dir>/model) is a causal LM for contrastkit generate "
                    "(e.g. --strategy contrastive_search).")
    add_run_options(p, "SimCTG", "recipes/simctg-smollm2.yaml")
    p.set_defaults(func=_cmd_simctg)
