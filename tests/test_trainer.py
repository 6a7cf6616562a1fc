"""Trainer: non-finite loss, best-checkpoint selection, accumulation semantics, schedule, refusal to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_sentences
from contrastkit.config import TrainConfig
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.errors import TrainingError
from contrastkit.losses import infonce
from contrastkit.samplers import RandomBatches, StreamingBatches
from contrastkit.training.checkpoint import latest_checkpoint, load_tree, save_tree
from contrastkit.training.trainer import Trainer, linear_warmup_decay
from contrastkit.views import embed_batch


def _examples(n: int = 40) -> list[Example]:
    return [Example(texts=(t,)) for t in make_sentences(n, seed=4)]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / "run"), batch_size=8, lr=1e-3, progress=False, checkpoint_every=1,
                log_every=1, seed=1)
    return TrainConfig(**(base | kw))


def _loss(a, p, n):
    return infonce(a, p, n, temperature=0.05)


def test_non_finite_loss_stops_with_message_and_keeps_last_checkpoint(tiny_bert: Path, tmp_path: Path):
    calls = {"n": 0}

    def exploding(a, p, n):
        calls["n"] += 1
        loss = _loss(a, p, n)
        return loss * float("nan") if calls["n"] == 3 else loss

    torch.manual_seed(0)
    trainer = Trainer(Encoder.from_pretrained(str(tiny_bert)), exploding, embed_batch, _cfg(tmp_path))
    with pytest.raises(TrainingError, match=r"loss became nan at step 3.*step-00000002"):
        trainer.fit(RandomBatches(_examples(), 8, seed=1))
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000002"
    assert not (tmp_path / "run" / "model").exists()


def test_refuses_to_overwrite_a_run_without_resume(tiny_bert: Path, tmp_path: Path):
    cfg = _cfg(tmp_path, max_steps=2)
    Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg).fit(RandomBatches(_examples(), 8))
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg).fit(RandomBatches(_examples(), 8))


def test_eval_selects_best_checkpoint_and_logs_metrics(tiny_bert: Path, tmp_path: Path):
    scores = iter([0.2, 0.9, 0.4, 0.1])

    def fake_eval(enc):
        return {"dev": next(scores)}

    torch.manual_seed(0)
    enc = Encoder.from_pretrained(str(tiny_bert))
    trainer = Trainer(enc, _loss, embed_batch, _cfg(tmp_path, max_steps=3), eval_fn=fake_eval, eval_every=1)
    result = trainer.fit(RandomBatches(_examples(), 8, seed=1))
    assert result.best_score == 0.9
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [1, 2, 3]
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["best_step"] == 2
    train_rows = [r for r in rows if "loss" in r]
    assert all({"loss", "lr", "sentences_per_s"} <= r.keys() for r in train_rows)
    # model/ holds the step-2 weights, not the final ones
    best = Encoder.from_pretrained(str(result.model_dir))
    assert not torch.equal(best.backbone.embeddings.word_embeddings.weight,
                           enc.backbone.embeddings.word_embeddings.weight)


def test_grad_accumulation_averages_micro_batches_without_adding_negatives(tiny_bert: Path):
    """Accumulating two batches of 4 gives the mean of their gradients, NOT the batch-of-8 gradient."""
    exs = _examples(8)
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    enc.train()

    def grad_of(batches):
        enc.zero_grad()
        for b in batches:
            a, p, n = embed_batch(enc, b)
            (_loss(a, p, n) / len(batches)).backward()
        return enc.backbone.embeddings.word_embeddings.weight.grad.clone()

    accumulated = grad_of([exs[:4], exs[4:]])
    separate = (grad_of([exs[:4]]) + grad_of([exs[4:]])) / 2
    full = grad_of([exs])
    assert torch.allclose(accumulated, separate, atol=1e-6)
    assert not torch.allclose(accumulated, full, atol=1e-4)


def test_supervised_triplets_train(tiny_bert: Path, tmp_path: Path):
    sents = make_sentences(48, seed=5)
    exs = [Example(texts=(sents[i], sents[i + 1], sents[i + 2])) for i in range(0, 45, 3)]
    enc = Encoder.from_pretrained(str(tiny_bert), pooling="cls")
    result = Trainer(enc, _loss, embed_batch, _cfg(tmp_path, batch_size=4)).fit(RandomBatches(exs, 4))
    assert result.steps == 4  # 15 examples -> 3 full batches + a batch of 3
    assert (result.model_dir / "model.safetensors").is_file()


def test_schedule_warms_up_then_decays_to_zero():
    f = linear_warmup_decay(10, 2)
    assert [round(f(s), 3) for s in range(11)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]


def test_random_batches_are_a_permutation_and_depend_only_on_seed_and_epoch():
    src = RandomBatches(list(range(10)), 4, seed=3)
    e0 = [x for b in src.batches(0) for x in b]
    assert sorted(e0) == list(range(10))
    assert list(src.batches(0, start=1)) == list(src.batches(0))[1:]
    assert e0 != [x for b in src.batches(1) for x in b]
    assert RandomBatches(list(range(9)), 4).batches_per_epoch == 2  # a batch of one is dropped


def test_streaming_batches_resume_and_cover_everything():
    src = StreamingBatches(lambda: iter(range(23)), 5, seed=1, buffer_size=4)
    assert src.count == 23 and src.batches_per_epoch == 5
    full = list(src.batches(0))
    assert sorted(x for b in full for x in b) == list(range(23))
    assert list(src.batches(0, start=2)) == full[2:]


def test_checkpoint_tree_round_trip(tmp_path: Path):
    tree = {"a": torch.arange(3), 2: {"b": (1.5, "x", None), "c": [torch.ones(2, 2), True]}}
    save_tree(tmp_path, "s", tree)
    back = load_tree(tmp_path, "s")
    assert torch.equal(back["a"], tree["a"]) and back[2]["b"] == (1.5, "x", None)
    assert torch.equal(back[2]["c"][0], torch.ones(2, 2)) and back[2]["c"][1] is True


def test_no_duplicates_sampler_keeps_every_example_and_no_text_twice_in_a_batch():
    from contrastkit.samplers import NoDuplicatesBatches

    texts = ["a", "b", "a", "c", "a", "d", "b", "e"]
    exs = [Example(texts=(t, f"p{i}")) for i, t in enumerate(texts)]
    src = NoDuplicatesBatches(exs, 3, seed=2)
    batches = list(src.batches(0))
    for b in batches:
        flat = [t for ex in b for t in ex.texts]
        assert len(flat) == len(set(flat))
    used = [ex.texts[1] for b in batches for ex in b]
    assert len(used) == len(set(used)) >= 6  # each example at most once; only an unplaceable tail is left out
    distinct = [Example(texts=(f"t{i}",)) for i in range(10)]
    assert sum(len(b) for b in NoDuplicatesBatches(distinct, 3).batches(0)) == 9  # a last batch of one is dropped
    assert list(src.batches(0, start=1)) == batches[1:]
    assert batches == list(NoDuplicatesBatches(exs, 3, seed=2).batches(0))


def test_max_minutes_stops_cleanly_and_resume_continues(tiny_bert: Path, tmp_path: Path):
    cfg = _cfg(tmp_path, max_minutes=1e-9, checkpoint_every=100)
    result = Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg).fit(RandomBatches(_examples(), 8))
    assert result.steps == 1 and (result.model_dir / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000001"
    cfg2 = _cfg(tmp_path, checkpoint_every=100)
    again = Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg2).fit(
        RandomBatches(_examples(), 8), resume=True)
    assert again.steps == 5


def test_a_time_limit_on_an_eval_step_does_not_evaluate_that_step_twice(tiny_bert: Path, tmp_path: Path):
    calls = []
    cfg = _cfg(tmp_path, max_minutes=1e-9, checkpoint_every=100)
    Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg, eval_fn=lambda enc: calls.append(1) or
            {"dev": 0.5}, eval_every=1).fit(RandomBatches(_examples(), 8))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval" in r] == [1] and len(calls) == 1


def test_a_source_that_yields_nothing_is_an_error_not_a_hang(tiny_bert: Path, tmp_path: Path):
    class Empty:
        batches_per_epoch = 3

        def batches(self, epoch, start=0):
            return iter(())

    with pytest.raises(TrainingError, match="yielded no batch"):
        Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, _cfg(tmp_path)).fit(Empty())


def test_max_steps_wins_over_epochs(tiny_bert: Path, tmp_path: Path):
    """40 examples in batches of 8 are 5 steps an epoch; max_steps=12 with epochs=1 runs 12 (as HF's Trainer)."""
    cfg = _cfg(tmp_path, epochs=1, max_steps=12, checkpoint_every=100)
    result = Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, cfg).fit(
        RandomBatches(_examples(), 8, seed=1))
    assert result.steps == 12
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["step"] == 12 and state["epoch"] == 2 and state["samples"] == 12 * 8


def test_time_based_checkpoint_saves_a_run_killed_before_checkpoint_every(tiny_bert: Path, tmp_path: Path):
    calls = {"n": 0}

    def killed_at_third_batch(a, p, n):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return _loss(a, p, n)

    cfg = _cfg(tmp_path, checkpoint_every=250, checkpoint_minutes=1e-9)
    with pytest.raises(KeyboardInterrupt):
        Trainer(Encoder.from_pretrained(str(tiny_bert)), killed_at_third_batch, embed_batch, cfg).fit(
            RandomBatches(_examples(), 8, seed=1))
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000002"
    assert TrainConfig().checkpoint_minutes == 10


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_exploded_weights_never_become_the_last_good_checkpoint(tiny_bert: Path, tmp_path: Path, capsys):
    """lr=1e9 after two good steps: the step-3 checkpoint is refused, step 2 stays the one to resume from."""
    ckpts = tmp_path / "run" / "checkpoints"
    Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, _cfg(tmp_path, max_steps=2)).fit(
        RandomBatches(_examples(), 8, seed=1))
    good = _weights(ckpts / "step-00000002")
    blown = _cfg(tmp_path, max_steps=5, lr=1e9)
    with pytest.raises(TrainingError, match=r"(?s)step 3: the weights' norm grew.*not written.*"
                                            r"Last good checkpoint: .*step-00000002.*--allow-change train\.lr"):
        Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, blown).fit(
            RandomBatches(_examples(), 8, seed=1), resume=True)
    assert latest_checkpoint(ckpts).name == "step-00000002"
    kept = _weights(ckpts / "step-00000002")
    assert all(torch.equal(kept[k], good[k]) for k in good)
    assert max(float(t.abs().max()) for t in kept.values()) < 100


def test_a_run_that_explodes_at_once_writes_no_checkpoint(tiny_bert: Path, tmp_path: Path):
    with pytest.raises(TrainingError, match=r"step 1: the weights' norm grew.*No checkpoint was written"):
        Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, _cfg(tmp_path, lr=1e9)).fit(
            RandomBatches(_examples(), 8, seed=1))
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") is None


def test_resume_trains_at_a_changed_lr_on_the_same_schedule(tiny_bert: Path, tmp_path: Path):
    Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, _cfg(tmp_path, max_steps=2)).fit(
        RandomBatches(_examples(), 8, seed=1))
    Trainer(Encoder.from_pretrained(str(tiny_bert)), _loss, embed_batch, _cfg(tmp_path, max_steps=4, lr=1e-4)).fit(
        RandomBatches(_examples(), 8, seed=1), resume=True)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert lrs[1] == pytest.approx(1e-3 * 1 / 2)  # the first run: lr 1e-3 decaying to 0 at step 2
    assert lrs[3] == pytest.approx(1e-4 * 1 / 4) and lrs[4] == 0.0  # resumed: lr 1e-4 decaying to 0 at step 4


@pytest.mark.parametrize("base_kind", ["tokenizer", "contrastkit_dir"])
def test_saved_model_keeps_the_base_inference_length_not_the_training_one(tiny_bert: Path, tmp_path: Path,
                                                                          base_kind: str):
    import shutil

    from contrastkit.config import build_config
    from contrastkit.run import train

    base = tmp_path / "base"
    if base_kind == "tokenizer":  # a plain HF dir: the limit is the tokenizer's model_max_length
        shutil.copytree(tiny_bert, base)
        tok_cfg = json.loads((base / "tokenizer_config.json").read_text())
        (base / "tokenizer_config.json").write_text(json.dumps(tok_cfg | {"model_max_length": 48}))
        expected = 48
    else:  # a sentence-transformers/contrastkit dir: its own max_seq_length
        Encoder.from_pretrained(str(tiny_bert), max_length=40).save(base)
        expected = 40
    assert Encoder.from_pretrained(str(base)).max_length == expected
    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(24, seed=2)) + "\n")

    def run(name: str, **model):
        cfg = build_config({"data": {"source": str(data)},
                            "model": {"backbone": str(base), "max_length": 16, **model},
                            "train": {"output_dir": str(tmp_path / name), "batch_size": 8, "max_steps": 1,
                                      "progress": False},
                            "eval": {"tasks": []}})
        model_dir = train(cfg).model_dir
        st = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        return st, Encoder.from_pretrained(str(model_dir)).max_length

    assert run("default") == (expected, expected)
    assert run("chosen", max_seq_length=24) == (24, 24)


def test_bf16_evaluation_during_training_sees_the_current_weights(tiny_bert: Path, tmp_path: Path):
    """The fused AdamW step moves no version counter: the bf16 inference copy must still be rebuilt."""
    texts = make_sentences(6, seed=2)
    seen = []

    def bf16_eval(enc):
        seen.append((enc.encode(texts, precision="bf16"), enc.encode(texts, precision="fp32")))
        return {"dev": 0.0}

    torch.manual_seed(0)
    enc = Encoder.from_pretrained(str(tiny_bert))
    Trainer(enc, _loss, embed_batch, _cfg(tmp_path, max_steps=2, lr=1e-2), eval_fn=bf16_eval,
            eval_every=1).fit(RandomBatches(_examples(), 8, seed=1))
    (bf1, fp1), (bf2, fp2) = seen[:2]
    assert not torch.allclose(torch.as_tensor(fp1), torch.as_tensor(fp2), atol=1e-3)  # the weights moved
    for bf, fp in ((bf1, fp1), (bf2, fp2)):
        assert torch.allclose(torch.as_tensor(bf), torch.as_tensor(fp), atol=3e-2)  # bf16 follows them
