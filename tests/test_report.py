"""evaluate_all + the report: two tiny models (one from a real training run), JSON, Markdown, PNGs, HTML in Chromium."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from conftest import build_tiny_bert, make_sentences

LIMIT = 60
TASKS = {"sts": ["STS12", "STSBenchmark", "SICKRelatedness"], "transfer": ["SST2", "MRPC"],
         "clustering": ["TREC"], "retrieval": ["STSB-paraphrase"]}
ODD = 'm<i>&"x'  # a model directory name that HTML must escape


def _train_run(base: Path, out: Path, data: Path) -> Path:
    """A real 3-step contrastkit training run (checkpoint every step, dev eval every step)."""
    import torch

    from contrastkit.config import TrainConfig
    from contrastkit.data import Example
    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.sts import evaluate_sts
    from contrastkit.evaluation.suite import subsample_task
    from contrastkit.losses import infonce
    from contrastkit.samplers import RandomBatches
    from contrastkit.training.trainer import Trainer
    from contrastkit.views import embed_batch

    dev = subsample_task(load_sts_task("STSBenchmark-dev", data), 30)

    def eval_fn(enc: Any) -> dict[str, float]:
        return {"STSBenchmark-dev": evaluate_sts(lambda t: enc.encode(t, precision="fp32"), [dev]).tasks[dev.name].spearman}

    cfg = TrainConfig(output_dir=str(out), batch_size=8, lr=3e-3, progress=False, checkpoint_every=1,
                      keep_checkpoints=5, log_every=1, seed=1, max_steps=3)
    torch.manual_seed(0)
    examples = [Example(texts=(t,)) for t in make_sentences(40, seed=4)]
    Trainer(Encoder.from_pretrained(str(base)), lambda a, p, n: infonce(a, p, n, temperature=0.05), embed_batch,
            cfg, eval_fn=eval_fn, eval_every=1, select_best=False).fit(RandomBatches(examples, 8, seed=1))
    return out / "model"


@pytest.fixture(scope="module")
def run(tiny_bert: Path, synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """evaluate_all on [tiny_bert (odd name), run/model of a second tiny BERT], report written."""
    import torch

    from contrastkit.evaluation.suite import evaluate_all

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("eval-all")
    first = tmp / ODD
    os.symlink(tiny_bert, first)
    second = _train_run(build_tiny_bert(tmp / "second-base", seed=1), tmp / "run", synthetic_data)
    out = tmp / "report"
    report = evaluate_all([str(first), str(second)], data_dir=synthetic_data, output_dir=out, batch_size=64,
                          progress=False, tasks=TASKS, limit=LIMIT, n_boot=200)
    return {"report": report, "out": out, "models": [first, second], "run_dir": tmp / "run", "data": synthetic_data}


def test_report_json_structure_and_numbers(run: dict[str, Any]) -> None:
    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.significance import paired_bootstrap
    from contrastkit.evaluation.sts import evaluate_sts
    from contrastkit.evaluation.suite import subsample_task

    report = json.loads((run["out"] / "report.json").read_text())
    assert [m["label"] for m in report["models"]] == [ODD, "model"]
    a, b = report["models"]
    for m in (a, b):
        assert set(m["suites"]) == {"sts", "transfer", "clustering", "retrieval", "geometry"}
        sts = m["suites"]["sts"]
        assert list(sts["tasks"]) == TASKS["sts"]
        for name, t in sts["tasks"].items():
            lo, hi = t["ci95"]
            assert lo <= t["spearman"] <= hi and t["n"] <= LIMIT
            assert set(t["aggregations"]["spearman"]) == {"all", "mean", "wmean"}
            assert t["aggregations"]["pearson"]["all"] == pytest.approx(t["pearson"])
        assert len(sts["tasks"]["STS12"]["subsets"]) == 5  # evenly spaced subsampling keeps every subset
        assert sts["average"] == pytest.approx(np.mean([t["spearman"] for t in sts["tasks"].values()]))
        for suite in ("transfer", "clustering", "retrieval"):
            res = m["suites"][suite]
            assert res["suite"] == suite and set(res["tasks"]) == set(TASKS[suite])
            assert all(res["tasks"][t][res["main_metric"]] is not None for t in res["tasks"])
        geo = m["suites"]["geometry"]
        assert all(math.isfinite(geo[k]) for k in ("alignment", "uniformity", "anisotropy", "effective_rank"))
        # STS-B sentences are shared by STS, geometry and retrieval: the cache encodes them once
        assert m["embedding_cache"]["hits"] > 0

    # STS-B: the per-pair cosines are the encoder's, and the scores and the paired test follow from them
    # (Spearman itself is compared through the stored cosines: the random tiny BERT maps most words to
    # [UNK], so many pairs tie and 1e-9 differences from batching reorder them)
    stsb = subsample_task(load_sts_task("STSBenchmark", run["data"]), LIMIT)
    sims = {}
    for m, path in zip((a, b), run["models"]):
        enc = Encoder.from_pretrained(str(path))
        direct = evaluate_sts(lambda t: enc.encode(t, precision="fp32"), [stsb]).sims["STSBenchmark"]
        pairs = m["suites"]["sts"]["stsb_test_pairs"]
        sims[m["label"]] = np.asarray(pairs["sim"])
        np.testing.assert_allclose(sims[m["label"]], direct, atol=1e-6)
        np.testing.assert_array_equal(pairs["gold"], stsb.scores)
        assert m["suites"]["sts"]["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(
            100 * spearmanr(sims[m["label"]], stsb.scores)[0], abs=1e-9)
    p1 = paired_bootstrap(sims["model"], sims[ODD], stsb.scores, n_boot=200, seed=0)
    p2 = paired_bootstrap(sims[ODD], sims["model"], stsb.scores, n_boot=200, seed=0)
    comp = report["comparisons"]
    assert comp["baseline"] == ODD
    c = comp["models"]["model"]["STSBenchmark"]
    assert c["p_value"] == pytest.approx(min(1.0, 2 * min(p1, p2)))
    assert c["significant"] == (c["p_value"] < 0.05)

    # the training run: curve, dev evaluations and geometry per checkpoint
    tr = b["training"]
    assert a["training"] is None and tr["run_dir"] == str(run["run_dir"])
    assert [r["step"] for r in tr["train"]] == [1, 2, 3] and all(r["loss"] > 0 for r in tr["train"])
    assert [r["step"] for r in tr["eval"]] == [1, 2, 3]
    assert [c["step"] for c in tr["checkpoints"]] == [1, 2, 3]
    # model/ holds the final weights, so the last checkpoint measures exactly as the model
    last = tr["checkpoints"][-1]
    assert last["alignment"] == pytest.approx(b["suites"]["geometry"]["alignment"], rel=1e-5)
    assert last["uniformity"] == pytest.approx(b["suites"]["geometry"]["uniformity"], rel=1e-5)
    assert tr["checkpoints"][0]["uniformity"] != pytest.approx(last["uniformity"], rel=1e-6)


def test_markdown_has_every_table(run: dict[str, Any]) -> None:
    md = (run["out"] / "report.md").read_text()
    for title in ("## STS (SimCSE protocol", "## STS per task", "## STS average under SentEval's aggregations",
                  "## STS subsets", "## Paired bootstrap against", "## Transfer (acc)", "## Clustering (",
                  "## Retrieval (ndcg@10)", "## Geometry", "## Training run of model"):
        assert title in md, title
    assert "| Model | STS12 | STS-B | SICK-R | Avg. |" in md
    assert f"| {ODD} |" in md
    row = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert len(row.split("|")) == len("| Model | STS12 | STS-B | SICK-R | Avg. |".split("|"))


def test_pngs_are_valid(run: dict[str, Any]) -> None:
    import matplotlib.image

    report = json.loads((run["out"] / "report.json").read_text())
    expected = {"fig-sts-bars.png", "fig-transfer-bars.png", "fig-clustering-bars.png", "fig-retrieval-bars.png",
                "fig-stsb-scatter.png", "fig-align-uniform.png", "fig-training-1.png"}
    assert set(report["figures"]) == expected
    for name in expected:
        data = (run["out"] / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        img = matplotlib.image.imread(run["out"] / name)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0, name


def test_html_escapes_text(run: dict[str, Any]) -> None:
    page = (run["out"] / "report.html").read_text()
    assert "<i>" not in page and "m&lt;i&gt;&amp;&quot;x" in page
    assert "<style>" in page and "<link" not in page and "<script" not in page


def test_html_renders_in_chromium(run: dict[str, Any]) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    from contrastkit.evaluation.report import report_tables

    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
                if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", lambda req: errors.append(f"requestfailed: {req.url} {req.failure}"))
        page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        page.goto((run["out"] / "report.html").as_uri(), wait_until="load")
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, "
                                                 "i.naturalWidth])")
        sections = page.eval_on_selector_all("section[data-table]", "s => s.map(x => x.dataset.table)")
        n_tables = page.eval_on_selector_all("table", "t => t.length")
        first_cell = page.inner_text("section[data-table='sts'] tbody tr td")
        italic = page.eval_on_selector_all("i", "e => e.length")
        browser.close()
    assert errors == []
    assert len(sizes) == 7 and all(done and width > 0 for _, done, width in sizes), sizes
    assert n_tables == len(report_tables(run["report"]))
    for key in ("sts", "sts-detail", "sts-aggregations", "sts-comparison", "transfer", "clustering", "retrieval",
                "geometry", "training"):
        assert key in sections, key
    assert first_cell == ODD and italic == 0


def test_missing_data_is_skipped_not_fatal(tiny_bert: Path, tmp_path: Path, monkeypatch) -> None:
    import contrastkit.data.embedded as emb
    from contrastkit.evaluation.suite import evaluate_all

    # the Bible task has its data (embedded), the SentEval-based ones do not
    verses = [(f"and the {w} was good", f"the {w} was good") for w in ("dog", "cat", "tree", "river", "sun")]
    monkeypatch.setattr(emb, "embedded_pairs", lambda name: verses)
    empty = tmp_path / "no-data"
    empty.mkdir()
    report = evaluate_all([str(tiny_bert)], data_dir=empty, output_dir=tmp_path / "out", progress=False,
                          suites=("sts", "transfer", "clustering", "retrieval", "geometry"))
    suites = report["models"][0]["suites"]
    for name in ("sts", "transfer", "clustering", "geometry"):
        assert suites[name]["skipped"] is True, (name, suites[name])
        assert str(empty) in suites[name]["reason"] or "not found" in suites[name]["reason"], suites[name]
    # each suite's reason names its own missing data, not STS's
    assert "transfer task" in suites["transfer"]["reason"] and "STS data" not in suites["transfer"]["reason"]
    assert "clustering task" in suites["clustering"]["reason"] and "STS data" not in suites["clustering"]["reason"]
    # retrieval is skipped per task: the Bible task runs, the others are named with their reason
    retrieval = suites["retrieval"]
    assert list(retrieval["tasks"]) == ["Bible-KJV-WEB"] and retrieval["tasks"]["Bible-KJV-WEB"]["ndcg@10"] > 0
    assert set(retrieval["skipped"]) == {"STSB-paraphrase", "SICK-paraphrase", "MRPC-paraphrase"}
    assert "retrieval task MRPC-paraphrase" in retrieval["skipped"]["MRPC-paraphrase"]
    del suites["retrieval"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Skipped suites" in md and "## STS (" not in md
    # only the suite that ran has a figure
    assert json.loads((tmp_path / "out" / "report.json").read_text())["figures"] == ["fig-retrieval-bars.png"]
    shutil.rmtree(tmp_path / "out")
