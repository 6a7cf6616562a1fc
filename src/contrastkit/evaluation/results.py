"""The common shape of evaluation results, so one report generator can read every suite.

Every results class of :mod:`contrastkit.evaluation` follows :class:`SuiteResult`:
``to_dict()`` returns at least::

    {"suite": str, "main_metric": str,
     "tasks": {task: {metric: value, ...}, ...},
     "average": float | None, "elapsed_s": float}

where ``tasks[t][main_metric]`` is the task's headline number and ``average`` the plain mean
of it over the tasks run (``None`` when no task ran or a score is undefined); and
``to_markdown()`` returns a Markdown table. :class:`TableResults` implements both for suites
whose per-task results are flat metric dictionaries.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["SuiteResult", "TableResults", "json_number", "mean_or_none"]


@runtime_checkable
class SuiteResult(Protocol):
    """What a report generator needs from any evaluation suite's results."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: suite, main_metric, tasks {task: {metric: value}}, average, elapsed_s."""
        ...

    def to_markdown(self) -> str:
        """A Markdown table of the per-task scores."""
        ...


def json_number(x: Any) -> Any:
    """A JSON-safe value: NaN/inf become None, numpy scalars become Python ones, others pass."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    return x


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Plain mean, or None when empty or any value is undefined."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals or len(vals) != len(values):
        return None
    return float(sum(vals) / len(vals))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.2f}"
    return str(v)


class TableResults:
    """Mixin: ``to_dict``/``to_markdown``/``to_text`` from ``task_metrics()`` and a few class attributes.

    Subclasses set ``suite``, ``main_metric``, ``columns`` (metrics shown in the table, in order)
    and ``elapsed_s``, and implement ``task_metrics() -> {task: {metric: value}}``.
    """

    suite: str = ""
    main_metric: str = ""
    columns: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    note: str = ""
    skipped: dict[str, str] = {}  # noqa: RUF012 - subclasses declare it as a dataclass field

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """Per-task flat metric dictionaries."""
        raise NotImplementedError

    def extra_dict(self) -> dict[str, Any]:
        """Suite-specific keys added to :meth:`to_dict` (protocol, skipped tasks, ...)."""
        return {}

    @property
    def average(self) -> float | None:
        """Mean of the main metric over the tasks run."""
        return mean_or_none([m.get(self.main_metric) for m in self.task_metrics().values()])

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form following :class:`SuiteResult`."""
        tasks = {t: {k: json_number(v) for k, v in m.items()} for t, m in self.task_metrics().items()}
        out: dict[str, Any] = {
            "suite": self.suite,
            "main_metric": self.main_metric,
            "tasks": tasks,
            "average": json_number(self.average),
            "elapsed_s": round(float(self.elapsed_s), 3),
        }
        out["skipped"] = dict(self.skipped)  # per task, with the reason ({"skipped": True} = a whole suite)
        out.update(self.extra_dict())
        return out

    def _skipped_note(self) -> str:
        if not self.skipped:
            return ""
        return " ".join(f"Skipped {k}: {v}." for k, v in self.skipped.items()) + " The average covers the tasks run."

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        cols = list(self.columns)
        head = ["Task", *cols]
        rows = [[t, *(_cell(m.get(c)) for c in cols)] for t, m in self.task_metrics().items()]
        if len(rows) > 1:
            avg = ["Avg.", *("" for _ in cols)]
            if self.main_metric in cols:
                avg[1 + cols.index(self.main_metric)] = _cell(self.average)
            rows.append(avg)
        return head, rows

    def to_markdown(self) -> str:
        """Markdown table: one row per task, then the average of the main metric."""
        head, rows = self._rows()
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
        tail = f"{self.suite}: main metric {self.main_metric}; {self.elapsed_s:.1f} s."
        lines.append(" ".join(x for x in (tail, self.note, self._skipped_note()) if x))
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """Fixed-width plain-text table."""
        head, rows = self._rows()
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def fmt(r: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        rule = "-" * len(fmt(head))
        return "\n".join([fmt(head), rule, *(fmt(r) for r in rows)])

