"""Build a run's objects from a :class:`RunConfig`: the one path shared by the CLI and the Python API."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .config import DataConfig, EvalConfig, LossConfig, ModelConfig, RunConfig, dump_config
from .data import Example, ReadStats, open_examples
from .encoders import Encoder
from .errors import ConfigError
from .losses import LOSSES
from .samplers import BatchSource, NoDuplicatesBatches, RandomBatches, StreamingBatches
from .training.trainer import EvalFn, LossFn, Trainer, TrainResult
from .views import embed_batch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (call before building the model: heads are randomly initialised)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_encoder(cfg: ModelConfig) -> Encoder:
    """The Encoder a model section describes."""
    encoder = Encoder.from_pretrained(
        cfg.backbone, pooling=cfg.pooling, max_length=cfg.max_length, num_layers=cfg.num_layers,
        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, residual_dropout=cfg.residual_dropout,
        prompt_template=cfg.prompt_template if cfg.pooling == "prompt" else None)
    if cfg.freeze_layers is not None:
        from .encoders.backbones import freeze_bottom

        freeze_bottom(encoder.backbone, cfg.freeze_layers)
    return encoder


def stream_training_examples(cfg: DataConfig, stats: ReadStats | None = None) -> Iterator[Example]:
    """Stream (and validate) the training examples of a data section, honouring ``limit``."""
    if cfg.source.startswith("embedded:"):
        from .data.embedded import embedded_corpus

        stream: Iterator[Example] = (Example(texts=(t,)) for t in embedded_corpus(cfg.source.split(":", 1)[1]))
    else:
        stream = open_examples(cfg.source, format=cfg.format, kind=cfg.kind, columns=cfg.columns,
                               split=cfg.split, stats=stats)
    return itertools.islice(stream, cfg.limit) if cfg.limit else stream


def load_training_examples(cfg: DataConfig) -> tuple[list[Example], ReadStats]:
    """Read all training examples of a data section into memory."""
    stats = ReadStats()
    return list(stream_training_examples(cfg, stats)), stats


def build_batches(config: RunConfig) -> BatchSource[Example]:
    """In-memory shuffled batches, or streaming batches when ``data.streaming`` is set."""
    seed, size = config.train.seed, config.train.batch_size
    if config.data.streaming:
        return StreamingBatches(lambda: stream_training_examples(config.data), size, seed=seed,
                                buffer_size=config.data.shuffle_buffer)
    examples, stats = load_training_examples(config.data)
    if stats.skipped_blank:
        print(f"data: {len(examples)} examples from {config.data.source} ({stats.skipped_blank} blank lines skipped)")
    if config.sampler.name == "no_duplicates":
        return NoDuplicatesBatches(examples, size, seed=seed)
    return RandomBatches(examples, size, seed=seed)


def build_loss(cfg: LossConfig) -> LossFn:
    """The loss function with its hyper-parameters bound."""
    return functools.partial(LOSSES.get(cfg.name), **cfg.kwargs())


def build_eval(cfg: EvalConfig, batch_size: int = 128, precision: str = "fp32") -> EvalFn | None:
    """An evaluation function over the configured STS dev tasks (Spearman x 100 per task)."""
    if not cfg.tasks:
        return None
    from .evaluation.senteval import load_sts_task

    tasks = [load_sts_task(name, data_dir=cfg.data_dir) for name in cfg.tasks]  # fail early if data is missing

    def evaluate(encoder: Encoder) -> dict[str, float]:
        from .evaluation.sts import evaluate_sts

        res = evaluate_sts(lambda texts: encoder.encode(texts, batch_size=batch_size, precision=precision),
                           tasks=tasks)
        return {name: res.tasks[name].spearman for name in res.tasks}

    return evaluate


def train(config: RunConfig, *, resume: bool = False) -> TrainResult:
    """Train the run a config describes; writes checkpoints, metrics and ``model/`` under output_dir."""
    out = Path(config.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.yaml"
    if resume and saved.is_file() and _results_config(yaml.safe_load(saved.read_text())) != _results_config(
            config.model_dump(mode="json")):
        raise ConfigError(f"--resume: the config differs from the one saved in {saved}; a resumed run "
                          "must use the same config (only train.max_minutes, num_threads, progress and device "
                          "may change)")
    saved.write_text(dump_config(config))
    if config.train.num_threads:
        import torch

        torch.set_num_threads(config.train.num_threads)
    source = build_batches(config)
    seed_everything(config.train.seed)
    encoder = build_encoder(config.model).to(resolve_device(config.train.device))
    embed = functools.partial(embed_batch, length_buckets=config.train.length_buckets)
    trainer = Trainer(encoder, build_loss(config.loss), embed, config.train,
                      eval_fn=build_eval(config.eval, precision=config.train.precision), eval_every=config.eval.every,
                      select_best=config.eval.select_best)
    return trainer.fit(source, resume=resume)


# Settings that change how a run executes, not what it computes: a resumed run may change them.
_OPERATIONAL = ("max_minutes", "num_threads", "progress", "device")


def _results_config(tree: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in tree.get("train", {}).items() if k not in _OPERATIONAL}
    return {**tree, "train": train}


def describe(result: TrainResult) -> dict[str, Any]:
    """A short JSON-able summary of a finished run."""
    return {"output_dir": str(result.output_dir), "model_dir": str(result.model_dir), "steps": result.steps,
            "best_dev": result.best_score, "seconds": round(result.seconds, 1)}
