"""benchmarks/ablation.py: its run configs are valid and differ from SimCSE in one component, its SNLI
triplets are well formed and free of STS evaluation sentences, and a failing config does not stop the rest."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import needs_shared_data
from contrastkit.config import build_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("ablation_bench", BENCH / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)
    sys.path.remove(str(BENCH))


SETTINGS = dict(backbone="smollm2-135m", layers=6, steps=10, batch_size=32, lr=3e-5, max_length=32, threads=1,
                freeze_embeddings=True)


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {"corpus": tmp_path / "corpus.txt", "triplets": tmp_path / "t.jsonl"}
    files["corpus"].write_text("a first sentence\nanother one here\n")
    files["triplets"].write_text(json.dumps({"anchor": "a", "positive": "b", "negative": "c"}) + "\n")
    return files


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_config_is_valid_and_changes_only_its_component(ablation, tmp_path):
    files = _files(tmp_path)
    base = _flat(ablation.run_tree(ablation.ABLATIONS["simcse"], SETTINGS, files, tmp_path / "x", 1))
    assert base["model.attention_dropout"] == 0.1 and base["loss.temperature"] == 0.05
    assert base["model.num_layers"] == 6 and base["eval.tasks"] == [] and base["train.max_steps"] == 10
    expected = {"dropout0": {"model.attention_dropout"}, "tau1": {"loss.temperature"},
                "clear": {"views.name", "views.p", "views.apply_to"}, "debiased": {"loss.name", "loss.tau_plus"}}
    for name, ab in ablation.ABLATIONS.items():
        tree = ablation.run_tree(ab, SETTINGS, files, tmp_path / "x", 1)
        build_config(tree)  # raises ConfigError on any invalid key or combination
        if name in expected:
            flat = _flat(tree)
            changed = {k for k in flat.keys() | base.keys() if flat.get(k) != base.get(k)}
            assert changed == expected[name], name
    pairs = _flat(ablation.run_tree(ablation.ABLATIONS["sup_pairs"], SETTINGS, files, tmp_path / "x", 1))
    trips = _flat(ablation.run_tree(ablation.ABLATIONS["sup_triplets"], SETTINGS, files, tmp_path / "x", 1))
    assert pairs["data.kind"] == "pair" and trips["data.kind"] == "triplet"
    assert pairs["data.source"] == trips["data.source"]  # same anchors and positives: only the hard negative differs


@needs_shared_data
def test_snli_triplets_are_entailment_contradiction_and_skip_banned(ablation, tmp_path):
    out = tmp_path / "t.jsonl"
    stats = ablation.build_snli_triplets(out)
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert stats["triplets"] == len(rows) > 5000
    assert all(r["anchor"] and r["positive"] and r["negative"] and r["positive"] != r["negative"] for r in rows)
    banned = {rows[0]["anchor"], rows[1]["negative"]}
    ablation.build_snli_triplets(out, banned)
    kept = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert not any(s in banned for r in kept for s in r.values())
    assert len(kept) < len(rows)


def test_summary_mean_and_sample_std(ablation):
    runs = [{"scores": {"STSBenchmark-dev": v, "STSBenchmark": v, "SICKRelatedness": v}} for v in (60.0, 62.0, 64.0)]
    s = ablation.summarize(runs + [{"seed": 4, "error": "boom"}])
    assert s["n"] == 3 and s["avg"] == {"mean": 62.0, "std": 2.0}
    d = ablation.delta(s, {"n": 3, "avg": {"mean": 61.0, "std": 0.0}})
    assert d == {"delta": 1.0, "se": round(2.0 / 3 ** 0.5, 2)}


def test_a_failing_config_is_recorded_and_the_rest_run(ablation, tmp_path, monkeypatch):
    def fake_run(ab, s, files, work, seed):
        if ab.name == "tau1":
            raise RuntimeError("simulated failure")
        v = 60.0 + seed
        return {"seed": seed, "scores": {t: v for t in ablation.TASKS}, "wall_s": 1.0}

    monkeypatch.setattr(ablation, "run_one", fake_run)
    # the orchestration is under test, not the data: no SentEval data needed
    monkeypatch.setattr(ablation, "build_corpus", lambda path: {"sentences": 2})
    monkeypatch.setattr(ablation, "build_snli_triplets", lambda path, banned=(): {"triplets": 1})
    monkeypatch.setattr(ablation, "eval_sentences", lambda root: set())
    monkeypatch.setattr(ablation, "resolve_senteval_dir", lambda: tmp_path)
    out = tmp_path / "ab.json"
    assert ablation.main(["--configs", "simcse,tau1,dropout0", "--seeds", "1,2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["error"] for r in res["configs"]["tau1"]["runs"]] == ["RuntimeError: simulated failure"] * 2
    assert res["configs"]["dropout0"]["summary"]["n"] == 2
    assert res["configs"]["dropout0"]["delta_vs_simcse"]["delta"] == 0.0
    assert "failed: RuntimeError" in res["table"] and res["machine"] and res["command"].endswith("--out " + str(out))
