"""Every recipe loads and trains for two steps (tiny BERT, tiny generated data, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import make_sentences
from contrastkit.config import build_config, load_config
from contrastkit.encoders.readouts import READOUTS
from contrastkit.run import train

ALL_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
# recipes of ``contrastkit lm mntp`` (an MNTP config: a ``mntp`` section, no loss) are checked below
MNTP_RECIPES = [p for p in ALL_RECIPES if "mntp" in (yaml.safe_load(p.read_text()) or {})]
# recipes of ``contrastkit lm simctg`` (a ``simctg`` section) are checked in tests/test_simctg.py
SIMCTG_RECIPES = [p for p in ALL_RECIPES if "simctg" in (yaml.safe_load(p.read_text()) or {})]
RECIPES = [p for p in ALL_RECIPES if p not in MNTP_RECIPES and p not in SIMCTG_RECIPES]


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
    # LLM2Vec (a decoder LM made bidirectional) and prompt readouts train a decoder LM
    decoder = tree["model"].get("bidirectional") or tree["model"].get("pooling") in READOUTS
    tree["model"].update(backbone=str(_tiny_decoder(tmp_path) if decoder else tiny_bert), max_length=16)
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


def _tiny_decoder(tmp: Path) -> Path:
    from conftest import build_tiny_llama

    return build_tiny_llama(tmp / "tiny-decoder")


def test_llm2vec_recipes_chain_mntp_then_simcse(tmp_path: Path):
    """llm2vec-1-mntp (contrastkit lm mntp) then llm2vec-2-simcse (contrastkit train) on its saved model,
    two steps each on a tiny random Llama; the shipped files validate as written."""
    from contrastkit.encoders import Encoder
    from contrastkit.lm.bidirectional import is_bidirectional
    from contrastkit.lm.mntp import build_mntp_config, load_mntp_config, train_mntp

    root = Path(__file__).resolve().parents[1] / "recipes"
    assert [p.name for p in MNTP_RECIPES] == ["llm2vec-1-mntp.yaml"]
    stage1 = load_mntp_config(root / "llm2vec-1-mntp.yaml")
    stage2 = load_config(root / "llm2vec-2-simcse.yaml")
    assert stage1.model.bidirectional and stage1.model.lora is not None and stage1.model.lora.r == 16
    assert stage2.model.bidirectional and stage2.model.backbone == stage1.train.output_dir + "/model"
    assert stage1.data.source == stage2.data.source == "embedded:wordnet"
    decoder = _tiny_decoder(tmp_path)
    small = dict(batch_size=8, max_steps=2, progress=False, checkpoint_every=100, num_threads=1, length_buckets=1)

    t1 = yaml.safe_load((root / "llm2vec-1-mntp.yaml").read_text())
    t1["data"]["source"] = _data(tmp_path, "single", None, "mntp")
    t1["model"].update(backbone=str(decoder), max_length=16)
    t1["train"].update(output_dir=str(tmp_path / "stage1"), **small)
    t1["eval"] = {"every": None, "tasks": []}
    r1 = train_mntp(build_mntp_config(t1, origin="llm2vec-1-mntp.yaml"))
    assert r1.steps == 2 and all(r["loss"] == r["loss"] for r in r1.history if "loss" in r)

    t2 = yaml.safe_load((root / "llm2vec-2-simcse.yaml").read_text())
    t2["data"]["source"] = _data(tmp_path, "single", None, "simcse")
    t2["model"].update(backbone=str(r1.model_dir), max_length=16)
    t2["train"].update(output_dir=str(tmp_path / "stage2"), **small)
    t2["eval"] = {"every": None, "tasks": []}
    r2 = train(build_config(t2, origin="llm2vec-2-simcse.yaml"))
    assert r2.steps == 2
    assert is_bidirectional(Encoder.from_pretrained(str(r2.model_dir)).backbone)
