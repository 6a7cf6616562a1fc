"""Subprocess used by test_resume: trains a tiny model, slowed down so that it can be killed mid-run."""

from __future__ import annotations

import sys
import time

from contrastkit.config import build_config
from contrastkit.run import build_encoder, build_loss, load_training_examples, seed_everything
from contrastkit.samplers import RandomBatches
from contrastkit.training.trainer import Trainer
from contrastkit.views import embed_batch


def main(model: str, data: str, out: str, resume: str, delay: str, checkpoint_minutes: str = "",
         lora: str = "") -> None:
    """With ``checkpoint_minutes``, checkpoints are time-based only (checkpoint_every is past the run's end);
    with ``lora``, LoRA adapters train instead of the backbone (saved merged)."""
    timed = {"checkpoint_every": 1000, "checkpoint_minutes": float(checkpoint_minutes)} if checkpoint_minutes else {}
    adapters = {"lora": {"r": 4, "alpha": 8.0, "dropout": 0.1}} if lora else {}
    cfg = build_config({
        "data": {"source": data},
        "model": {"backbone": model, "pooling": "cls_mlp", "dropout": 0.1, **adapters},
        "train": {"output_dir": out, "batch_size": 8, "epochs": 2, "lr": 1e-3, "warmup_ratio": 0.2,
                  "checkpoint_every": 3, "keep_checkpoints": 2, "progress": False, "seed": 5, **timed},
        "eval": {"tasks": []},
    })
    examples, _ = load_training_examples(cfg.data)
    base_loss = build_loss(cfg.loss)
    pause = float(delay)

    def slow_loss(a, p, n):
        time.sleep(pause)
        return base_loss(a, p, n)

    seed_everything(cfg.train.seed)
    trainer = Trainer(build_encoder(cfg.model), slow_loss, embed_batch, cfg.train)
    trainer.fit(RandomBatches(examples, cfg.train.batch_size, seed=cfg.train.seed), resume=resume == "1")


if __name__ == "__main__":
    main(*sys.argv[1:])
