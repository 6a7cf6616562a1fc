"""``contrastkit export``: write a model's ONNX (and int8 ONNX) backbone for fast CPU inference."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _cmd_export(args: argparse.Namespace) -> int:
    from ..encoders.onnx_backend import export_model

    report = export_model(args.model, output=args.output, quantize=args.quantize, check_sts=args.check_sts,
                          data_dir=args.data_dir, opset=args.opset)
    for backend, entry in report["files"].items():
        line = (f"{backend:10s} {entry['file']:18s} {entry['size_mb']:8.1f} MB  max |dev| {entry['max_abs_dev']:.2e}"
                f"  min cos {entry['min_cosine']:.5f}")
        if "stsb_delta_vs_torch" in entry:
            line += f"  STS-B {entry['stsb_test_spearman']:.2f} ({entry['stsb_delta_vs_torch']:+.2f})"
        print(line)
    if report["stsb_check_skipped"]:
        print(f"STS-B check skipped: {report['stsb_check_skipped']}")
    backends = " or ".join(f"'{b}'" for b in report["files"])
    print(f"wrote {report['dir']}/onnx (metadata: export.json); encode with it via "
          f"Encoder.from_pretrained(dir, backend={backends}) or --backend")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def register(sub: Any, groups: dict[str, Any]) -> None:
    """Add ``export`` to the top-level sub-commands."""
    from ..evaluation.senteval import DATA_SEARCH_ORDER

    p = sub.add_parser("export", help="export a model to ONNX (optionally int8) for fast CPU encoding")
    p.add_argument("--model", required=True, help="model dir (or hub name/alias with --output)")
    p.add_argument("--format", required=True, choices=["onnx"], help="export format")
    p.add_argument("--quantize", choices=["int8"], help="also write an int8-weight model (model_int8.onnx)")
    p.add_argument("--output", help="directory to save the model and its onnx/ into (default: the model dir)")
    p.add_argument("--check-sts", action="store_true", help="also report STS-B test Spearman of each file vs torch")
    p.add_argument("--data-dir", help=f"SentEval data folder for --check-sts; looked for at: {DATA_SEARCH_ORDER}")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--json", action="store_true", help="print the full export report as JSON")
    p.set_defaults(func=_cmd_export)
