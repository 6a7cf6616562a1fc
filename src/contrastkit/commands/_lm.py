"""What the ``lm`` sub-commands share: the ``lm`` group's parsers and the options of a resumable run."""

from __future__ import annotations

import argparse


def lm_group(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]
             ) -> argparse._SubParsersAction:
    """The ``lm`` group's sub-parsers, created by whichever ``lm`` command registers first (each command module
    gets its own ``groups``, so an existing group is found among ``sub``'s parsers)."""
    if "lm" not in groups:
        lm = sub.choices.get("lm")
        if lm is None:
            lm = sub.add_parser("lm", help="language-model stages (decoder LMs as encoders)")
            groups["lm"] = lm.add_subparsers(dest="lm_command", required=True, metavar="LM_COMMAND")
        else:
            groups["lm"] = next(a for a in lm._actions if isinstance(a, argparse._SubParsersAction))
    return groups["lm"]


def add_run_options(p: argparse.ArgumentParser, what: str, recipe: str) -> None:
    """CONFIG, --set, --resume [RUN_DIR] and --allow-change, as ``contrastkit train`` takes them."""
    p.add_argument("config", nargs="?", help=f"YAML {what} config ({recipe}); not needed with --resume RUN_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=50 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue from the latest checkpoint of RUN_DIR (its saved config.yaml) or of the "
                        "config's train.output_dir")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a changed config key or section (repeatable)")
