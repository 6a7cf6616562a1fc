"""``contrastkit eval all``: every evaluation suite on one or more models, with a JSON/Markdown/HTML report."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError

SUITES = ("sts", "transfer", "clustering", "retrieval", "geometry")
"""contrastkit.evaluation.suite.SUITES, repeated here so building the CLI parser stays fast (no scipy)."""


def _parse_tasks(items: list[str]) -> dict[str, list[str]]:
    """``SUITE=TASK1,TASK2`` items (repeatable) -> {suite: [tasks]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        suite, sep, names = item.partition("=")
        if not sep or not suite or not names:
            raise ConfigError(f"--tasks {item!r}: expected SUITE=TASK[,TASK...], e.g. sts=STSBenchmark,SICKRelatedness")
        out.setdefault(suite.strip(), []).extend(n.strip() for n in names.split(",") if n.strip())
    return out


def _cmd_eval_all(args: argparse.Namespace) -> int:
    from ..evaluation.report import to_markdown
    from ..evaluation.suite import evaluate_all

    report = evaluate_all(args.model, suites=args.suites, data_dir=args.data_dir, output_dir=args.output,
                          batch_size=args.batch_size, precision=args.precision, progress=args.progress,
                          cache_dir=args.cache_dir, tasks=_parse_tasks(args.tasks), limit=args.limit,
                          n_boot=args.n_boot)
    print(to_markdown(report))
    paths: dict[str, Any] = report.get("paths", {})
    for key in ("json", "markdown", "html"):
        if key in paths:
            print(f"wrote {paths[key]}")
    return 0


def register(sub: Any, groups: dict[str, Any]) -> None:
    """Add ``eval all`` to the ``eval`` group."""
    from ..evaluation.senteval import DATA_SEARCH_ORDER

    p = groups["eval"].add_parser(
        "all", help="every suite (STS, transfer, clustering, retrieval, geometry) on one or more models, "
                    "with significance tests and a JSON/Markdown/HTML report")
    p.add_argument("--model", action="append", required=True, metavar="DIR",
                   help="model dir, training-run dir, hub name or alias (repeat to compare models; "
                        "the first is the baseline of the significance tests)")
    p.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES), metavar="SUITE",
                   help=f"suites to run (default: all of {', '.join(SUITES)})")
    p.add_argument("--tasks", action="append", default=[], metavar="SUITE=TASK[,TASK]",
                   help="restrict a suite to some tasks, e.g. sts=STSBenchmark,SICKRelatedness (repeatable)")
    p.add_argument("--output", default="eval-report", help="directory for report.json/.md/.html and figures")
    p.add_argument("--data-dir", help=f"SentEval data folder; looked for at: {DATA_SEARCH_ORDER}")
    p.add_argument("--batch-size", type=int, default=128, help="texts per forward pass")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="compute precision (auto: bf16 where the hardware runs it natively)")
    p.add_argument("--cache-dir", help="keep embeddings on disk here, to reuse them in a later run")
    p.add_argument("--limit", type=int, help="at most N pairs/examples per task (quick looks only; "
                                             "numbers are then not comparable)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs and tests")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=_cmd_eval_all)
