"""``contrastkit eval all``: the command writes the report and prints its tables; bad input is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.cli import main


def test_eval_all_command_writes_report(tiny_bert: Path, synthetic_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    cache = tmp_path / "cache"
    argv = ["eval", "all", "--model", str(tiny_bert), "--suites", "sts", "geometry",
            "--tasks", "sts=STSBenchmark,SICKRelatedness", "--limit", "40", "--n-boot", "50",
            "--data-dir", str(synthetic_data), "--output", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| Model | STS-B | SICK-R | Avg. |" in printed and "## Geometry" in printed
    for name in ("report.json", "report.md", "report.html"):
        assert f"wrote {out / name}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["limit"] == 40 and report["settings"]["suites"] == ["sts", "geometry"]
    assert list(report["models"][0]["suites"]["sts"]["tasks"]) == ["STSBenchmark", "SICKRelatedness"]
    first = report["models"][0]["embedding_cache"]
    assert first["misses"] > 0 and first["disk_hits"] == 0

    # a second run reads every embedding from --cache-dir and reports the same numbers
    assert main(argv) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["models"][0]["embedding_cache"]["disk_hits"] == first["misses"]
    assert again["models"][0]["embedding_cache"]["misses"] == 0
    assert again["models"][0]["suites"]["sts"]["tasks"] == report["models"][0]["suites"]["sts"]["tasks"]


@pytest.mark.parametrize("extra, message", [
    (["--tasks", "sts"], "expected SUITE=TASK"),
    (["--tasks", "sts=STS99"], "unknown STS task"),
    (["--tasks", "geometry=X"], "tasks given for unknown suite"),
    (["--limit", "2"], "limit must be at least 3"),
])
def test_eval_all_bad_input_is_a_clear_error(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             extra: list[str], message: str) -> None:
    argv = ["eval", "all", "--model", str(tiny_bert), "--suites", "sts", "--output", str(tmp_path / "o"),
            "--no-progress", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_all_missing_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["eval", "all", "--model", str(missing), "--suites", "geometry", "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and str(missing) in err


def test_cli_suite_list_matches_the_library() -> None:
    from contrastkit.commands.eval_all import SUITES as CLI_SUITES
    from contrastkit.evaluation.suite import SUITES

    assert CLI_SUITES == SUITES
