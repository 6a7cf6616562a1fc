"""Every recipe loads and trains for two steps (tiny BERT, tiny generated data, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import make_sentences
from contrastkit.config import build_config, load_config
from contrastkit.run import train

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def _data(tmp: Path, kind: str, columns: list[str] | None, tag: str) -> str:
    sents = make_sentences(48, seed=hash(tag) % 1000)
    if kind == "single":
        path = tmp / f"{tag}.txt"
        path.write_text("\n".join(sents) + "\n")
        return str(path)
    width = {"pair": 2, "triplet": 3, "scored": 2}[kind]
    cols = columns or {"pair": ["anchor", "positive"], "triplet": ["anchor", "positive", "negative"],
                       "scored": ["sentence1", "sentence2", "score"]}[kind]
    path = tmp / f"{tag}.jsonl"
    with path.open("w") as fh:
        for i in range(len(sents)):
            row = {cols[c]: sents[(i + c * 7) % len(sents)] for c in range(width)}
            if kind == "scored":
                row[cols[2]] = float(i % 5)
            fh.write(json.dumps(row) + "\n")
    return str(path)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_two_steps(recipe: Path, tiny_bert: Path, tmp_path: Path):
    load_config(recipe)  # as shipped
    tree = yaml.safe_load(recipe.read_text())
    d = tree["data"]
    sources = d["source"] if isinstance(d["source"], list) else [d["source"]]
    d["source"] = [_data(tmp_path, d.get("kind", "single"), d.get("columns"), f"s{i}") for i in range(len(sources))]
    if len(sources) == 1:
        d["source"] = d["source"][0]
    d.pop("format", None)
    tree["model"].update(backbone=str(tiny_bert), max_length=16)
    tree["model"].pop("num_layers", None)
    if "teacher" in tree:
        tree["teacher"]["model"] = str(tiny_bert)
    if "mining" in tree:
        tree["mining"].update(rank_window=[1, 8], margin_type="absolute", margin=-2.0, cache=str(tmp_path / "mined.jsonl"))
    if tree.get("views", {}).get("name") == "span_sampling":
        tree["views"].update(min_span_len=1, max_span_len=4)
    if tree.get("sampler", {}).get("name") == "clustered":
        tree["sampler"]["num_clusters"] = 3
    tree["train"].update(output_dir=str(tmp_path / "run"), batch_size=8, max_steps=2, progress=False,
                         checkpoint_every=100, num_threads=1, length_buckets=1)
    tree["eval"] = {"every": None, "tasks": []}
    result = train(build_config(tree, origin=recipe.name))
    assert result.steps == 2
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses and all(v == v and abs(v) < 1e6 for v in losses)
    assert (result.model_dir / "config.json").is_file() or any(result.model_dir.iterdir())
