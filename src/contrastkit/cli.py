"""Command line: ``contrastkit train | eval ... | demo`` and the commands of ``contrastkit.commands``.

Each module of the ``contrastkit.commands`` package adds its own sub-command(s): it
defines ``register(sub, groups)`` where ``sub`` holds the top-level sub-parsers and
``groups`` maps a group name (``"eval"``) to that group's sub-parsers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, ContrastkitError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, except for flags and options whose default is "not set"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with :class:`HelpFormatter`; sub-commands added by ``add_parser`` inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import describe, resume_config, train

    config_path, run_dir = args.config, args.resume if isinstance(args.resume, str) else None
    if config_path is None and run_dir is not None and Path(run_dir).is_file():
        config_path, run_dir = run_dir, None  # "train --resume CONFIG"
    if args.allow_change and args.resume is None:
        raise ConfigError("--allow-change applies only with --resume (a new run takes its config as given)")
    if config_path is None and run_dir is None:
        raise ConfigError("train needs a CONFIG file (see recipes/), or --resume RUN_DIR to continue a run "
                          "with the config saved in RUN_DIR/config.yaml")
    if config_path is None:
        config = resume_config(run_dir, args.set)
    else:
        config = load_config(config_path, args.set)
        if run_dir is not None:  # the directory named by --resume is the run's
            config = config.model_copy(update={"train": config.train.model_copy(update={"output_dir": run_dir})})
    result = train(config, resume=args.resume is not None, allow_changes=args.allow_change)
    print(json.dumps(describe(result), indent=2))
    return 0


def _cmd_eval_sts(args: argparse.Namespace) -> int:
    from .encoders import Encoder
    from .evaluation.sts import SIMCSE_TASKS, evaluate_sts

    enc = Encoder.from_pretrained(args.model, backend=args.backend)
    tasks = args.tasks or [*SIMCSE_TASKS, "STSBenchmark-original"]
    # "Avg." is SimCSE's: over the seven SimCSE tasks when they are all there, else over what was asked.
    avg = list(SIMCSE_TASKS) if set(SIMCSE_TASKS) <= set(tasks) else tasks
    res = evaluate_sts(lambda texts: enc.encode(texts, batch_size=args.batch_size, precision=args.precision,
                                                show_progress=args.progress),
                       tasks=tasks, data_dir=args.data_dir, avg_tasks=avg)
    print(res.to_text())
    print(f"took {res.elapsed_s:.1f} s")
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sts.json").write_text(json.dumps(res.to_dict(), indent=2))
        (out / "sts.md").write_text(res.to_markdown() + "\n")
        print(f"wrote {out / 'sts.json'} and {out / 'sts.md'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(output_dir=args.output_dir, quick=args.quick, merge_alpha=args.merge_alpha)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contrastkit`` command."""
    from .evaluation.senteval import DATA_SEARCH_ORDER

    p = ArgumentParser(prog="contrastkit", description="Contrastive learning of text embeddings.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from a YAML run config, or continue a killed or stopped run with "
                                   "--resume RUN_DIR (its saved config.yaml is reused).")
    t.add_argument("config", nargs="?",
                   help="YAML run config (see recipes/); not needed with --resume RUN_DIR")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-5 or --set eval.tasks=[] (repeatable)")
    t.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue from the latest checkpoint: of RUN_DIR with the config saved there, or of "
                        "the given config's train.output_dir. A config that differs from the saved one is "
                        "refused, naming each changed key")
    t.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a changed config key (or a whole section), e.g. "
                        "--allow-change train.lr after a NaN stop (repeatable)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a model")
    esub = e.add_subparsers(dest="suite", required=True)
    s = esub.add_parser("sts", help="STS (SimCSE/SentEval protocol: Spearman of cosine similarity)")
    s.add_argument("--model", required=True, help="model dir, hub name or alias")
    s.add_argument("--tasks", nargs="*",
                   help="task names (default: the 7 SimCSE tasks and MTEB's STS-B test on original text)")
    s.add_argument("--data-dir", help=f"SentEval data folder; looked for at: {DATA_SEARCH_ORDER}")
    s.add_argument("--output", help="directory for sts.json and sts.md (default: print only)")
    s.add_argument("--batch-size", type=int, default=128, help="texts per forward pass")
    s.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="compute precision (auto: bf16 where the hardware runs it natively)")
    s.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto",
                   help="onnx*: files of 'contrastkit export'; auto: $CONTRASTKIT_BACKEND or torch")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    s.set_defaults(func=_cmd_eval_sts)

    d = sub.add_parser("demo", help="the main job: train on an embedded default, evaluate, report")
    d.add_argument("--output-dir", default="runs/demo", help="directory for the run, model and report")
    d.add_argument("--quick", action="store_true", help="a tiny version for smoke tests")
    d.add_argument("--merge-alpha", type=float, default=None,
                   help="share of the fine-tuning update kept: saved = base + alpha x (fine-tuned - base) "
                        "(WiSE-FT); 1 = plain fine-tuning (default: contrastkit.demo.DEFAULT_MERGE_ALPHA)")
    d.set_defaults(func=_cmd_demo)

    from . import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{commands.__name__}.{mod}").register(sub, {"eval": esub})
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``contrastkit`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ContrastkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (continue a training run with: contrastkit train --resume "
              "RUN_DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
