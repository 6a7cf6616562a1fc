"""Config: unknown keys and wrong types are rejected naming the key; overrides; recipes load."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit.config import apply_overrides, build_config, dump_config, load_config
from contrastkit.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BASE = {"data": {"source": "x.txt"}, "model": {"backbone": "m"}}


def test_defaults_fill_in():
    cfg = build_config(BASE)
    assert cfg.loss.temperature == 0.05 and cfg.train.batch_size == 64 and cfg.model.pooling == "mean"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lerning_rate'"):
        build_config({**BASE, "train": {"lerning_rate": 1e-5}})


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="unknown key 'optimiser'"):
        build_config({**BASE, "optimiser": {}})


def test_wrong_type_is_named_with_value():
    with pytest.raises(ConfigError, match=r"'train\.batch_size'.*'many'"):
        build_config({**BASE, "train": {"batch_size": "many"}})
    with pytest.raises(ConfigError, match=r"'loss\.temperature'"):
        build_config({**BASE, "loss": {"temperature": -1}})
    with pytest.raises(ConfigError, match=r"'model\.pooling'"):
        build_config({**BASE, "model": {"backbone": "m", "pooling": "maxx"}})


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        build_config({"model": {"backbone": "m"}})


def test_impossible_combination_is_rejected_at_load():
    with pytest.raises(ConfigError, match="symmetric"):
        build_config({**BASE, "loss": {"symmetric": True}})


def test_overrides_parse_yaml_scalars():
    tree = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=3e-5", "train.progress=false", "model.num_layers=8"])
    assert tree["train"] == {"lr": 3e-5, "progress": False}
    assert tree["model"] == {"num_layers": 8}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_load_config_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: {source: a.txt}\nmodel: {backbone: m, poolin: cls}\n")
    with pytest.raises(ConfigError, match=rf"(?s){typo.name}.*unknown key 'model\.poolin'"):
        load_config(typo)


def test_dump_round_trips():
    cfg = build_config(BASE)
    import yaml

    assert build_config(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_are_valid(recipe: Path):
    import yaml

    from contrastkit.lm.mntp import load_mntp_config
    from contrastkit.lm.simctg import load_simctg_config

    # a recipe with a ``mntp`` / ``simctg`` section is a ``contrastkit lm mntp`` / ``lm simctg`` config,
    # the others ``contrastkit train``'s
    tree = yaml.safe_load(recipe.read_text()) or {}
    loader = load_mntp_config if "mntp" in tree else load_simctg_config if "simctg" in tree else load_config
    cfg = loader(recipe)
    assert cfg.train.output_dir


def test_simcse_recipes_carry_the_paper_hyperparameters():
    unsup = load_config(RECIPES / "simcse-unsup.yaml")
    assert (unsup.train.batch_size, unsup.train.lr, unsup.model.max_length, unsup.loss.temperature,
            unsup.train.epochs, unsup.model.pooling) == (64, 3e-5, 32, 0.05, 1, "cls_mlp")
    sup = load_config(RECIPES / "simcse-sup.yaml")
    assert (sup.data.kind, sup.train.batch_size, sup.train.lr, sup.train.epochs) == ("triplet", 512, 5e-5, 3)


def test_loss_parameters_are_checked_against_the_loss_signature():
    cfg = build_config({**BASE, "loss": {"name": "debiased", "tau_plus": 0.2}})
    assert cfg.loss.kwargs() == {"temperature": 0.05, "tau_plus": 0.2}
    with pytest.raises(ConfigError, match=r"unknown key 'tau_pluss' for loss 'debiased'"):
        build_config({**BASE, "loss": {"name": "debiased", "tau_pluss": 0.2}})
    with pytest.raises(ConfigError, match="unknown loss 'infonse'"):
        build_config({**BASE, "loss": {"name": "infonse"}})
    with pytest.raises(ConfigError, match=r"loss 'cosent' needs a gold score per pair"):
        build_config({**BASE, "loss": {"name": "cosent"}})


def test_build_loss_binds_only_the_losses_own_parameters():
    import torch

    from contrastkit.run import build_loss

    fn = build_loss(build_config({**BASE, "data": {"source": "x.jsonl", "kind": "triplet"},
                                  "loss": {"name": "triplet", "margin": 0.3}}).loss)
    a = torch.randn(4, 8)
    assert torch.isfinite(fn(a, a + 0.1, torch.randn(4, 8)))


def test_duplicate_yaml_keys_are_refused_naming_key_and_lines(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text("data: {source: a.txt}\nmodel: {backbone: m}\ntrain:\n  lr: 1.0e-5\n  batch_size: 8\n  lr: 5.0\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml.*duplicate key 'lr' \(first at line 4, again at line 6\)"):
        load_config(path)


def test_exponent_floats_in_yaml_files_are_numbers(tmp_path: Path):
    path = tmp_path / "lr.yaml"
    path.write_text("data: {source: a.txt}\nmodel: {backbone: m}\ntrain: {lr: 3e-5, weight_decay: 1E-2}\n")
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.weight_decay) == (3e-5, 0.01)


@pytest.mark.parametrize("item, message", [
    ("train.lr=[", r"--set train\.lr=\[: not a valid value"),
    ("train.lr=!!python/object/apply:os.system [echo hi]", r"--set train\.lr=.*not a valid value.*python/object"),
    ("train..lr=1", r"dotted key"),
])
def test_bad_set_values_are_clear_errors(item: str, message: str):
    with pytest.raises(ConfigError, match=message):
        apply_overrides({}, [item])


def test_types_are_strict_no_bool_or_text_for_numbers():
    with pytest.raises(ConfigError, match=r"'train\.batch_size': Input should be a valid integer \(got True\)"):
        build_config(apply_overrides({**BASE}, ["train.batch_size=true"]))
    with pytest.raises(ConfigError, match=r"'train\.lr'.*\(got True\)"):
        build_config({**BASE, "train": {"lr": True}})
    with pytest.raises(ConfigError, match=r"'data\.streaming'.*\(got 1\)"):
        build_config({**BASE, "data": {"source": "x.txt", "streaming": 1}})
    from pydantic import ValidationError

    from contrastkit.config import MiningConfig

    with pytest.raises(ValidationError, match=r"rank_window\.0"):
        MiningConfig(rank_window=[True, 5])
    # what is meant stays accepted: an int for a float, a list for a pair, a Path for a path
    cfg = build_config({**BASE, "train": {"lr": 1, "output_dir": Path("runs/x")}})
    assert (cfg.train.lr, cfg.train.output_dir) == (1.0, "runs/x")
    assert MiningConfig.model_validate({"rank_window": [1, 5]}).rank_window == (1, 5)


def test_config_differences_name_each_changed_key():
    from contrastkit.config import config_differences

    a = build_config(BASE)
    b = build_config({**BASE, "train": {"lr": 1e-5, "progress": False}, "eval": {"tasks": []}})
    assert config_differences(a, b) == {"train.lr": (3e-5, 1e-5), "train.progress": (True, False),
                                        "eval.tasks": (["STSBenchmark-dev"], [])}
    assert set(config_differences(a, b, ignore=["train.progress"])) == {"train.lr", "eval.tasks"}
