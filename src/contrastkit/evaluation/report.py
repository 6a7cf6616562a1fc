"""Write the report of :func:`contrastkit.evaluation.suite.evaluate_all`: JSON, Markdown, HTML and plots.

The tables are built once (:func:`report_tables`) and rendered to Markdown and to a
self-contained HTML page (inline CSS, ``<img>`` tags pointing at PNG files written beside it).
Plots use matplotlib's Agg backend: per-task bars across models, similarity vs gold on STS-B
test, alignment vs uniformity across checkpoints (as SimCSE's figure 2, Gao et al., 2021)
and training loss / dev curves.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Table", "make_plots", "report_tables", "to_html", "to_markdown", "write_report"]

SIG_MARK = "†"
"""Mark for a score that differs from the first model's at p < 0.05 (paired bootstrap)."""

_SHORT = {"STSBenchmark": "STS-B", "SICKRelatedness": "SICK-R", "STSBenchmark-original": "STS-B (MTEB)",
          "STSBenchmark-dev": "STS-B dev", "SICKRelatedness-dev": "SICK-R dev"}
_SUITE_TITLES = {"sts": "STS", "transfer": "Transfer", "clustering": "Clustering", "retrieval": "Retrieval",
                 "geometry": "Geometry"}
_GEOMETRY_ROWS = (("alignment", "Alignment (lower is better)"), ("uniformity", "Uniformity (lower is better)"),
                  ("anisotropy", "Anisotropy (mean cosine of random pairs)"),
                  ("effective_rank", "Effective rank"))


@dataclass
class Table:
    """A titled table of text cells, rendered to Markdown and HTML alike."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    align_left: int = 1  # the first columns are labels (left-aligned); the rest are numbers
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _fmt(x: Any, digits: int = 2) -> str:
    """A number for a table cell; missing values become an en dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}"
    return str(x)


def _models(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report.get("models", []))


def _ok(entry: dict[str, Any], suite: str) -> dict[str, Any] | None:
    """The results of one suite for one model, or None when skipped / not run."""
    res = entry.get("suites", {}).get(suite)
    return None if res is None or res.get("skipped") is True else res


def _sig(report: dict[str, Any], label: str, task: str) -> bool:
    comp = report.get("comparisons") or {}
    return bool(comp.get("models", {}).get(label, {}).get(task, {}).get("significant"))


# ----------------------------------------------------------------------------- tables
def _sts_tables(report: dict[str, Any]) -> list[Table]:
    models = [(m["label"], _ok(m, "sts")) for m in _models(report)]
    models = [(lab, r) for lab, r in models if r is not None]
    if not models:
        return []
    tasks: list[str] = list(dict.fromkeys(t for _, r in models for t in r["tasks"]))
    avg_tasks = models[0][1].get("avg_tasks", tasks)
    in_avg = [t for t in tasks if t in avg_tasks]
    rest = [t for t in tasks if t not in avg_tasks]
    baseline = (report.get("comparisons") or {}).get("baseline")
    mark_note = (f" {SIG_MARK}: differs from {baseline} at p < 0.05 (paired bootstrap over pairs, two-sided)."
                 if baseline else "")

    def cell(label: str, r: dict[str, Any], t: str) -> str:
        if t not in r["tasks"]:
            return "–"
        return _fmt(r["tasks"][t]["spearman"]) + (SIG_MARK if _sig(report, label, t) else "")

    header = ["Model", *[_SHORT.get(t, t) for t in in_avg], *(["Avg."] if len(in_avg) > 1 else []),
              *[_SHORT.get(t, t) for t in rest]]
    rows = []
    for label, r in models:
        row = [label, *[cell(label, r, t) for t in in_avg]]
        if len(in_avg) > 1:
            row.append(_fmt(r.get("avg")))
        row += [cell(label, r, t) for t in rest]
        rows.append(row)
    out = [Table("STS (SimCSE protocol: Spearman × 100 of cosine similarity)", header, rows,
                 note="STS12-16 'all' aggregation (pairs of all subsets pooled); STS-B and SICK-R test." + mark_note,
                 key="sts")]

    labels = [lab for lab, _ in models]
    detail = []
    for t in tasks:
        row = [_SHORT.get(t, t)]
        for label, r in models:
            d = r["tasks"].get(t)
            if d is None:
                row.append("–")
                continue
            ci = d.get("ci95")
            ci_s = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            row.append(f"{_fmt(d['spearman'])}{SIG_MARK if _sig(report, label, t) else ''}{ci_s} / "
                       f"{_fmt(d['pearson'])}")
        detail.append(row)
    out.append(Table("STS per task: Spearman [95% CI] / Pearson", ["Task", *labels], detail,
                     note=f"Percentile bootstrap over pairs ({models[0][1].get('n_boot', '?')} resamples)." + mark_note,
                     key="sts-detail"))

    aggs = []
    for how, desc in (("all", "all (pairs pooled)"), ("mean", "mean of subsets"), ("wmean", "mean weighted by pairs")):
        aggs.append([desc, *[_fmt((r.get("aggregations") or {}).get(how)) for _, r in models]])
    out.append(Table("STS average under SentEval's aggregations", ["Aggregation", *labels], aggs,
                     note="Average Spearman over the tasks of 'Avg.'; the aggregation changes only STS12-16.",
                     key="sts-aggregations"))

    subs = []
    for t in tasks:
        names = list(dict.fromkeys(s for _, r in models for s in (r["tasks"].get(t) or {}).get("subsets", {})))
        for s in names:
            subs.append([_SHORT.get(t, t), s, *[_fmt(((r["tasks"].get(t) or {}).get("subsets", {}).get(s) or {})
                                                      .get("spearman")) for _, r in models]])
    if subs:
        out.append(Table("STS subsets (Spearman)", ["Task", "Subset", *labels], subs, align_left=2,
                         key="sts-subsets"))

    comp = report.get("comparisons") or {}
    if comp.get("models"):
        others = list(comp["models"])
        rows_c = []
        for t in tasks:
            row = [_SHORT.get(t, t)]
            for lab in others:
                c = comp["models"][lab].get(t)
                row.append("–" if c is None else f"{_fmt(c['delta'])} (p={c['p_value']:.3f})"
                           + (SIG_MARK if c["significant"] else ""))
            rows_c.append(row)
        out.append(Table(f"Paired bootstrap against {comp['baseline']}: Δ Spearman (p-value)",
                         ["Task", *others], rows_c, note=comp.get("test", ""), key="sts-comparison"))
    limit = (report.get("settings") or {}).get("limit")
    if limit:
        out[0].note += f" Subsampled to at most {limit} pairs per task: not comparable to published numbers."
    missing = {t: why for _, r in models for t, why in (r.get("missing") or {}).items()}
    if missing:
        out[0].note += " Missing tasks: " + "; ".join(f"{t} ({why})" for t, why in missing.items())
    return out


def _suite_table(report: dict[str, Any], suite: str) -> list[Table]:
    """Rows = tasks, columns = models, cells = each task's main metric; then the average."""
    models = [(m["label"], _ok(m, suite)) for m in _models(report)]
    models = [(lab, r) for lab, r in models if r is not None]
    if not models:
        return []
    metric = models[0][1].get("main_metric", "")
    tasks = list(dict.fromkeys(t for _, r in models for t in r.get("tasks", {})))
    rows = []
    for t in tasks:
        row = [t]
        for _, r in models:
            vals = r.get("tasks", {}).get(t) or {}
            row.append(_fmt(vals.get(r.get("main_metric", metric))))
        rows.append(row)
    rows.append(["Avg.", *[_fmt(r.get("average")) for _, r in models]])
    notes = []
    for lab, r in models:
        if r.get("limit"):
            notes.append(f"{lab}: subsampled to {r['limit']} examples per split (not comparable to published numbers).")
        skipped = r.get("skipped")
        if isinstance(skipped, dict) and skipped:
            notes.append(f"{lab}: skipped " + "; ".join(f"{t} ({why})" for t, why in skipped.items()))
    return [Table(f"{_SUITE_TITLES[suite]} ({metric})", ["Task", *[lab for lab, _ in models]], rows,
                  note=" ".join(dict.fromkeys(notes)), key=suite)]


def _geometry_table(report: dict[str, Any]) -> list[Table]:
    models = [(m["label"], _ok(m, "geometry")) for m in _models(report)]
    models = [(lab, r) for lab, r in models if r is not None]
    if not models:
        return []
    rows = [[desc, *[_fmt(r.get(key), 3) for _, r in models]] for key, desc in _GEOMETRY_ROWS]
    first = models[0][1]
    note = (f"On {first.get('data', 'STS-B')}: alignment over {first.get('positive_pairs')} pairs scored above "
            f"{first.get('threshold')}, the rest over {first.get('sentences')} distinct sentences "
            "(Wang & Isola, 2020; as SimCSE).")
    return [Table("Geometry", ["Measure", *[lab for lab, _ in models]], rows, note=note, key="geometry")]


def _training_tables(report: dict[str, Any]) -> list[Table]:
    out = []
    for m in _models(report):
        tr = m.get("training")
        if not tr:
            continue
        rows = [[str(c["step"]), _fmt(c["alignment"], 3), _fmt(c["uniformity"], 3), _fmt(c["stsb_spearman"])]
                for c in tr.get("checkpoints", [])]
        final = _ok(m, "geometry")
        if final:
            sts = _ok(m, "sts") or {}
            stsb = (sts.get("tasks") or {}).get("STSBenchmark", {}).get("spearman")
            rows.append(["model/", _fmt(final["alignment"], 3), _fmt(final["uniformity"], 3), _fmt(stsb)])
        note = f"Run {tr['run_dir']}: {len(tr.get('train', []))} logged training rows, " \
               f"{len(tr.get('eval', []))} dev evaluations."
        if tr.get("checkpoints_skipped"):
            note += f" Checkpoints not measured: {tr['checkpoints_skipped']}."
        elif not tr.get("checkpoints"):
            note += " No saved checkpoint (train.keep_checkpoints sets how many a run keeps)."
        out.append(Table(f"Training run of {m['label']}: geometry per checkpoint",
                         ["Step", "Alignment", "Uniformity", "STS-B"], rows, note=note, key="training"))
    return out


def _skipped_table(report: dict[str, Any]) -> list[Table]:
    rows = [[m["label"], _SUITE_TITLES.get(s, s), r["reason"]] for m in _models(report)
            for s, r in m.get("suites", {}).items() if r.get("skipped") is True]
    return [Table("Skipped suites", ["Model", "Suite", "Reason"], rows, align_left=3, key="skipped")] if rows else []


def report_tables(report: dict[str, Any]) -> list[Table]:
    """Every table of the report, in order: STS, transfer, clustering, retrieval, geometry, training."""
    tables = _sts_tables(report)
    for suite in ("transfer", "clustering", "retrieval"):
        tables += _suite_table(report, suite)
    tables += _geometry_table(report) + _training_tables(report) + _skipped_table(report)
    return tables


# ----------------------------------------------------------------------------- markdown
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    """The report's tables as Markdown."""
    lines = ["# Evaluation report", ""]
    lines.append("Models: " + ", ".join(f"`{m['label']}` ({m['path']})" for m in _models(report)))
    lines.append("")
    for t in report_tables(report):
        lines += [f"## {t.title}", ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
        lines.append("|" + "|".join(["---"] * t.align_left + ["---:"] * (len(t.header) - t.align_left)) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        if t.note:
            lines += ["", t.note]
        lines.append("")
    if report.get("elapsed_s") is not None:
        lines.append(f"Evaluated in {report['elapsed_s']:.1f} s.")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- plots
def _bars(ax: Any, groups: list[str], series: list[tuple[str, list[float | None]]], ylabel: str) -> None:
    import numpy as np

    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width,
               label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def make_plots(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Write the report's PNG figures into ``out_dir``; returns (caption, file name) pairs."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    figs: list[tuple[str, str]] = []
    models = _models(report)

    def save(fig: Any, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        figs.append((caption, name))

    for suite in ("sts", "transfer", "clustering", "retrieval"):
        have = [(m["label"], _ok(m, suite)) for m in models]
        have = [(lab, r) for lab, r in have if r is not None]
        if not have:
            continue
        tasks = list(dict.fromkeys(t for _, r in have for t in r.get("tasks", {})))
        series = []
        for lab, r in have:
            metric = "spearman" if suite == "sts" else r.get("main_metric", "")
            series.append((lab, [(r["tasks"].get(t) or {}).get(metric) for t in tasks]))
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(tasks) + 2), 3.6))
        _bars(ax, [_SHORT.get(t, t) for t in tasks], series,
              "Spearman × 100" if suite == "sts" else str(have[0][1].get("main_metric", "")))
        ax.set_title(f"{_SUITE_TITLES[suite]} per task")
        save(fig, f"fig-{suite}-bars.png", f"{_SUITE_TITLES[suite]}: per-task scores across models")

    scatter = [(m["label"], (_ok(m, "sts") or {}).get("stsb_test_pairs")) for m in models]
    scatter = [(lab, d) for lab, d in scatter if d]
    if scatter:
        fig, axes = plt.subplots(1, len(scatter), figsize=(3.6 * len(scatter), 3.4), squeeze=False)
        for ax, (lab, d) in zip(axes[0], scatter):
            ax.scatter(d["gold"], d["sim"], s=4, alpha=0.4)
            ax.set_xlabel("gold score")
            ax.set_ylabel("cosine similarity")
            ax.set_title(lab, fontsize=9)
            ax.grid(alpha=0.3)
        save(fig, "fig-stsb-scatter.png", "STS-B test: cosine similarity against the gold score")

    points = []
    for m in models:
        geo = _ok(m, "geometry")
        ckpts = (m.get("training") or {}).get("checkpoints") or []
        if geo or ckpts:
            points.append((m["label"], geo, ckpts))
    if points:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        for lab, geo, ckpts in points:
            line = None
            if ckpts:
                (line,) = ax.plot([c["uniformity"] for c in ckpts], [c["alignment"] for c in ckpts], "o-",
                                  ms=4, label=f"{lab} (checkpoints)")
                for c in ckpts:
                    ax.annotate(str(c["step"]), (c["uniformity"], c["alignment"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
            if geo:
                ax.plot([geo["uniformity"]], [geo["alignment"]], "*", ms=12,
                        color=None if line is None else line.get_color(), label=f"{lab}")
        ax.set_xlabel("uniformity (lower is better)")
        ax.set_ylabel("alignment (lower is better)")
        ax.set_title("Alignment vs uniformity on STS-B")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "fig-align-uniform.png", "Alignment and uniformity (as SimCSE's figure 2): checkpoints and models")

    for i, m in enumerate(models):
        tr = m.get("training") or {}
        train, evals = tr.get("train") or [], tr.get("eval") or []
        if not train and not evals:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        if train:
            axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
        axes[0].set_xlabel("step")
        axes[0].set_ylabel("training loss")
        axes[0].grid(alpha=0.3)
        if evals:
            axes[1].plot([r["step"] for r in evals], [r["primary"] for r in evals], "o-")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("dev score")
        axes[1].grid(alpha=0.3)
        fig.suptitle(f"Training of {m['label']}", fontsize=10)
        save(fig, f"fig-training-{i}.png", f"Training loss and dev score of {m['label']}")
    return figs


# ----------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
p.note{font-size:.85rem;color:#555;margin-top:.2rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}code{background:#f5f5f5;padding:0 .2rem}
"""


def to_html(report: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    """A self-contained HTML page (inline CSS; images are PNG files beside it); all text escaped."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>contrastkit evaluation report</title>", f"<style>{_CSS}</style>", "</head><body>",
             "<h1>Evaluation report</h1>", "<p>Models: " + ", ".join(
                 f"<code>{e(m['label'])}</code> ({e(m['path'])})" for m in _models(report)) + "</p>"]
    for t in report_tables(report):
        parts.append(f'<section data-table="{e(t.key)}"><h2>{e(t.title)}</h2><table>')
        parts.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
        for row in t.rows:
            cells = "".join(f"<td>{e(c)}</td>" if j < t.align_left else f'<td class="num">{e(c)}</td>'
                            for j, c in enumerate(row))
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
        if t.note:
            parts.append(f'<p class="note">{e(t.note)}</p>')
        parts.append("</section>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, name in figures:
            parts.append(f'<figure><img src="{e(name, quote=True)}" alt="{e(caption, quote=True)}">'
                         f"<figcaption>{e(caption)}</figcaption></figure>")
    if report.get("elapsed_s") is not None:
        created = e(str(report.get("created", "")))
        parts.append(f'<p class="note">Evaluated in {report["elapsed_s"]:.1f} s; created {created}.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- files
def write_report(report: dict[str, Any], output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write report.json, report.md, report.html and the PNG figures into ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        figures = make_plots(report, out)
    except ImportError:  # matplotlib is the optional 'report' extra; tables are written regardless
        figures = []
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    data = {k: v for k, v in report.items() if k != "paths"}
    data["figures"] = [name for _, name in figures]
    data["paths"] = {k: str(v) for k, v in paths.items()}
    _atomic_write(paths["json"], json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
    _atomic_write(paths["markdown"], to_markdown(report))
    _atomic_write(paths["html"], to_html(report, figures))
    for _, name in figures:
        paths[name] = out / name
    return paths


def _finite(tree: Any) -> Any:
    """Replace NaN and infinities by None so the JSON stays standard."""
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_finite(v) for v in tree]
    return tree


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
