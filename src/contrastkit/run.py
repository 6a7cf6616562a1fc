"""Build a run's objects from a :class:`RunConfig`: the one path shared by the CLI and the Python API."""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .config import (DataConfig, EvalConfig, LossConfig, ModelConfig, RunConfig, TeacherConfig, build_config,
                     config_differences, dump_config, read_config_tree)
from .data import Example, ReadStats, open_examples
from .encoders import Encoder
from .errors import ConfigError, DataError
from .losses import LOSSES
from .samplers import (BatchSource, GroupedBatches, NoDuplicatesBatches, RandomBatches, StreamingBatches,
                       community_groups, kmeans_groups)
from .training.negatives import build_negatives
from .training.trainer import EvalFn, LossFn, Trainer, TrainResult


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
        if not torch.cuda.is_available():
            return "cpu"
        local = os.environ.get("LOCAL_RANK")  # under torchrun: one device per process
        return f"cuda:{local}" if local is not None else "cuda"
    return name


def build_encoder(cfg: ModelConfig) -> Encoder:
    """The Encoder a model section describes, truncating at the training ``max_length``."""
    return build_training_encoder(cfg)[0]


def build_training_encoder(cfg: ModelConfig) -> tuple[Encoder, int]:
    """The Encoder of a model section and the ``max_seq_length`` its trained model is saved with.

    The saved limit is ``model.max_seq_length`` when set, else the base model's own (its
    sentence-transformers config or its tokenizer's ``model_max_length``, capped at its position
    embeddings): the training ``max_length`` (SimCSE truncates at 32) never becomes the inference limit.
    """
    encoder = Encoder.from_pretrained(
        cfg.backbone, pooling=cfg.pooling, max_length=None, num_layers=cfg.num_layers,
        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, residual_dropout=cfg.residual_dropout,
        prompt_template=cfg.prompt_template if cfg.pooling == "prompt" else None, readout=cfg.readout or None,
        bidirectional=True if cfg.bidirectional else None)
    base_limit = encoder.max_length
    positions = getattr(encoder.backbone.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        base_limit = min(base_limit, positions)
    encoder.max_length = cfg.max_length
    if cfg.freeze_layers is not None:
        from .encoders.backbones import freeze_bottom

        freeze_bottom(encoder.backbone, cfg.freeze_layers)
    if cfg.bias_only:
        if cfg.freeze_layers is not None or cfg.lora is not None:
            raise ConfigError("model.bias_only goes with neither model.freeze_layers nor model.lora "
                              "(it already freezes every weight matrix)")
        from .encoders.backbones import train_biases_only

        train_biases_only(encoder.backbone)
    if cfg.lora is not None:
        if cfg.freeze_layers is not None:
            raise ConfigError("model.lora and model.freeze_layers together: LoRA already freezes the backbone")
        encoder.add_lora(r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                         target_modules=cfg.lora.target_modules, save=cfg.lora.save, base_name=str(cfg.backbone))
    return encoder, cfg.max_seq_length or base_limit


def stream_training_examples(cfg: DataConfig, stats: ReadStats | None = None) -> Iterator[Example]:
    """Stream (and validate) the training examples of a data section, honouring ``limit``."""
    if isinstance(cfg.source, list):  # several sources, one after the other (limit applies to each)
        return itertools.chain.from_iterable(stream_training_examples(cfg.model_copy(update={"source": s}), stats)
                                             for s in cfg.source)
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


def load_teacher(config: RunConfig) -> Any:
    """The frozen teacher of ``config.teacher`` (None when the run has none)."""
    if config.teacher is None:
        return None
    from .teacher import Teacher

    return Teacher.from_config(config.teacher, resolve_device(config.train.device))


def build_batches(config: RunConfig, teacher: Any = None) -> BatchSource[Example]:
    """In-memory batches from the configured sampler (after mining, if set), or streaming batches."""
    seed, size = config.train.seed, config.train.batch_size
    if config.data.streaming:
        return StreamingBatches(lambda: stream_training_examples(config.data), size, seed=seed,
                                buffer_size=config.data.shuffle_buffer)
    sources = config.data.source if isinstance(config.data.source, list) else [config.data.source]
    examples: list[Example] = []
    groups: list[int] = []
    for g, src in enumerate(sources):
        part, stats = load_training_examples(config.data.model_copy(update={"source": src}))
        if stats.skipped_blank:
            print(f"data: {len(part)} examples from {src} ({stats.skipped_blank} blank lines skipped)")
        examples.extend(part)
        groups.extend([g] * len(part))
    if config.sampler.name in ("clustered", "mined_batches") or config.mining is not None:
        teacher = teacher or load_teacher(config)
    if config.mining is not None:
        examples, groups = _mine(config, examples, groups, teacher)
    return _sampler(config, examples, groups, teacher)


def _mine(config: RunConfig, examples: list[Example], groups: list[int], teacher: Any) -> tuple[list[Example], list[int]]:
    from .data.mining import load_or_mine

    m = config.mining
    assert m is not None and config.teacher is not None
    cache = Path(m.cache or Path(config.train.output_dir) / "mined_negatives.jsonl")
    params = {"rank_window": list(m.rank_window), "margin": m.margin, "margin_type": m.margin_type,
              "num_negatives": m.num_negatives}
    mined: list[Example] = []
    out_groups: list[int] = []
    for g in sorted(set(groups)):  # mine within each source
        part = [e for e, gg in zip(examples, groups) if gg == g]
        triplets, stats, cached = load_or_mine(part, teacher.embed, cache.with_name(f"{cache.stem}-{g}{cache.suffix}")
                                               if len(set(groups)) > 1 else cache, teacher=config.teacher.model,
                                               params=params, show_progress=config.train.progress)
        print(f"mining{' (cached)' if cached else ''}: {stats.mined}/{stats.pairs} pairs got "
              f"{m.num_negatives} hard negative(s); {stats.left_out} left out (too few candidates), "
              f"{stats.false_negatives_dropped} candidates dropped as likely false negatives")
        mined.extend(triplets)
        out_groups.extend([g] * len(triplets))
    if len(mined) < 2:
        raise DataError(f"mining left {len(mined)} of {len(examples)} pairs with enough hard negatives; widen "
                        "mining.rank_window, loosen mining.margin or lower mining.num_negatives")
    return mined, out_groups


def _sampler(config: RunConfig, examples: list[Example], groups: list[int], teacher: Any) -> BatchSource[Example]:
    s, seed, size = config.sampler, config.train.seed, config.train.batch_size
    if s.name == "no_duplicates":
        return NoDuplicatesBatches(examples, size, seed=seed)
    if s.name in ("clustered", "mined_batches"):
        emb = teacher.embed([e.texts[0] for e in examples], show_progress=config.train.progress).cpu().numpy()
        if s.name == "clustered":
            groups = list(kmeans_groups(emb, s.num_clusters or max(1, len(examples) // size), seed=seed))
        else:
            groups = list(community_groups(emb, s.neighbors, s.community_size or size, seed=seed))
    if s.name in ("single_source", "clustered", "mined_batches"):
        return GroupedBatches(examples, groups, size, seed=seed, groups_per_batch=s.groups_per_batch)
    return RandomBatches(examples, size, seed=seed)


def build_loss(cfg: LossConfig, teacher: TeacherConfig | None = None) -> LossFn:
    """The loss function with its hyper-parameters bound, fed its per-batch inputs from the batch's extras."""
    from .losses.inputs import with_inputs

    threshold = teacher.false_negative_threshold if teacher is not None else 0.9
    return with_inputs(functools.partial(LOSSES.get(cfg.name), **cfg.kwargs()), cfg.name, cfg.params,
                       false_negative_threshold=threshold)


def build_embed(config: RunConfig, encoder: Encoder, teacher: Any = None) -> Any:
    """The trainer's embed function: the configured views plus the per-row loss inputs (scores, teacher)."""
    from .losses.inputs import required_inputs
    from .views.compose import ViewEmbedder
    from .views.self_guided import SelfGuidedView

    v = config.views
    need = set(required_inputs(config.loss.name, config.loss.params).values())
    if v.name == "synonym_substitution":
        from .views import get_wordnet

        try:
            get_wordnet().synonyms("car")
        except Exception as err:  # WordNetUnavailableError names the missing file and the fix
            raise ConfigError(f"views.name 'synonym_substitution': {err}") from None
    sg = SelfGuidedView(encoder, **v.params) if v.name == "self_guided" else None
    if "teacher" in need and teacher is None:
        teacher = load_teacher(config)
    if "teacher" in need and config.loss.name == "mse_distill" and teacher.dim != encoder.dim:
        raise ConfigError(f"loss 'mse_distill': the teacher's dimension {teacher.dim} differs from the student's "
                          f"{encoder.dim}; pick a teacher of the same width")
    return ViewEmbedder(v.name, v.params, num_views=v.num_views, apply_to=v.apply_to,
                        length_buckets=config.train.length_buckets, teacher=teacher if "teacher" in need else None,
                        scores="data" in need, self_guided=sg)


def build_eval(cfg: EvalConfig, batch_size: int = 128, precision: str = "fp32") -> EvalFn | None:
    """An evaluation function over the configured STS dev tasks (Spearman x 100 per task).

    A task whose data is not found is left out with one warning naming how to point at the data and how
    to turn evaluation off; with no task left the run trains without evaluation (None).
    """
    if not cfg.tasks:
        return None
    from .evaluation.senteval import DATA_ENV_VAR, DataNotFoundError, load_sts_task

    tasks, missing, looked = [], [], []
    for name in cfg.tasks:
        try:
            tasks.append(load_sts_task(name, data_dir=cfg.data_dir))
        except DataNotFoundError as err:
            missing.append(name)
            looked.extend(str(p) for p in err.searched if str(p) not in looked)
    if missing:
        outcome = (f"evaluating on {', '.join(t.name for t in tasks)} only" if tasks else
                   "training without evaluation (model/ will hold the final weights)")
        print(f"warning: no data for eval.tasks {', '.join(missing)} (looked in: {', '.join(looked) or '-'}); "
              f"{outcome}. Point at SentEval data with --set eval.data_dir=DIR or ${DATA_ENV_VAR}=DIR, or turn "
              "dev evaluation off with --set eval.tasks=[] (Python: eval={'tasks': []}).", file=sys.stderr)
    if not tasks:
        return None

    def evaluate(encoder: Encoder) -> dict[str, float]:
        from .evaluation.sts import evaluate_sts

        res = evaluate_sts(lambda texts: encoder.encode(texts, batch_size=batch_size, precision=precision),
                           tasks=tasks)
        return {name: res.tasks[name].spearman for name in res.tasks}

    return evaluate


# Settings that change how a run executes, not what it computes: a resumed run may change them.
OPERATIONAL_KEYS = tuple(f"train.{k}" for k in (
    "output_dir", "max_minutes", "num_threads", "progress", "device", "checkpoint_every", "checkpoint_minutes",
    "keep_checkpoints", "log_every"))


def resume_config(output_dir: str | Path, overrides: list[str] | None = None, *,
                  build: Callable[..., Any] = build_config) -> Any:
    """The config saved in a run directory (``config.yaml``), with ``--set`` overrides applied.

    ``build`` turns the tree into the run's config class (``build_config`` for ``contrastkit train``).
    """
    from .config import apply_overrides

    saved = Path(output_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {output_dir}: no config.yaml there (not a training run directory?); "
                          "pass the run's config file too: contrastkit train CONFIG --resume")
    tree = apply_overrides(read_config_tree(saved), overrides or [])
    tree.setdefault("train", {})["output_dir"] = str(output_dir)  # the run may have been moved
    return build(tree, origin=str(saved))


def command_config(config_path: str | None, resume: str | bool | None, overrides: list[str], allow_change: list[str],
                   *, load: Callable[[str, list[str]], Any], build: Callable[..., Any], usage: str) -> Any:
    """The config of a training command from its arguments: ``CONFIG`` (``load``) or ``--resume RUN_DIR``'s saved
    one (``build``), with ``--set`` overrides; ``--resume CONFIG`` reads CONFIG, and ``--resume RUN_DIR`` with a
    CONFIG makes RUN_DIR its ``train.output_dir``. ``usage`` is the error when neither is given."""
    run_dir = resume if isinstance(resume, str) else None
    if config_path is None and run_dir is not None and Path(run_dir).is_file():
        config_path, run_dir = run_dir, None
    if allow_change and resume is None:
        raise ConfigError("--allow-change applies only with --resume")
    if config_path is None and run_dir is None:
        raise ConfigError(usage)
    if config_path is None:
        return resume_config(run_dir, overrides, build=build)
    config = load(config_path, overrides)
    if run_dir is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"output_dir": run_dir})})
    return config


def check_resume_changes(config: Any, allow_changes: Iterable[str] = (), *,
                         build: Callable[..., Any] = build_config) -> dict[str, tuple[Any, Any]]:
    """Compare a resumed run's config with its saved ``config.yaml``; refuse changes not allowed by name.

    Operational settings (``OPERATIONAL_KEYS``) may always change. ``allow_changes`` holds dotted keys
    (``train.lr``) or section names (``train``). Returns the accepted changes as ``{key: (old, new)}``.
    ``build`` reads the saved tree into the same config class as ``config``.
    """
    saved_path = Path(config.train.output_dir) / "config.yaml"
    if not saved_path.is_file():
        return {}
    saved = build(read_config_tree(saved_path), origin=str(saved_path))
    diffs = config_differences(saved, config, ignore=OPERATIONAL_KEYS)
    allowed = set(allow_changes)

    def ok(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:i]) in allowed for i in range(1, len(parts) + 1))

    refused = {k: v for k, v in diffs.items() if not ok(k)}
    if refused:
        lines = "\n".join(f"  {k}: {old!r} (saved) -> {new!r} (now)" for k, (old, new) in refused.items())
        flags = " ".join(f"--allow-change {k}" for k in refused)
        raise ConfigError(f"--resume: the config differs from the one saved in {saved_path}:\n{lines}\n"
                          f"A resumed run continues the saved config (contrastkit train --resume "
                          f"{config.train.output_dir}). To continue with these changes, accept each by name: "
                          f"{flags} (Python: train(config, resume=True, allow_changes=[...])).")
    return diffs


def train(config: RunConfig, *, resume: bool = False, allow_changes: Iterable[str] = ()) -> TrainResult:
    """Train the run a config describes; writes checkpoints, metrics and ``model/`` under output_dir.

    With ``resume`` the run continues from its latest checkpoint; a config that differs from the saved
    ``config.yaml`` is refused unless each changed key is named in ``allow_changes``.
    """
    from .errors import TrainingError
    from .training.checkpoint import latest_checkpoint

    out = Path(config.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        for key, (old, new) in check_resume_changes(config, allow_changes).items():
            print(f"resume: {key} changed from {old!r} to {new!r} (allowed)")
    elif latest_checkpoint(out / "checkpoints") is not None:  # before config.yaml is replaced
        raise TrainingError(f"{out} already holds checkpoints; continue that run with contrastkit train --resume "
                            f"{out}, or choose another train.output_dir")
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes
        (out / "config.yaml").write_text(dump_config(config))
    if config.train.num_threads:
        import torch

        torch.set_num_threads(config.train.num_threads)
    teacher = load_teacher(config)
    source = build_batches(config, teacher)
    seed_everything(config.train.seed)
    encoder, save_max_length = build_training_encoder(config.model)
    encoder = encoder.to(resolve_device(config.train.device))
    embed = build_embed(config, encoder, teacher)
    trainer = Trainer(encoder, build_loss(config.loss, config.teacher), embed, config.train,
                      eval_fn=build_eval(config.eval, precision=config.train.precision), eval_every=config.eval.every,
                      select_best=config.eval.select_best, negatives=build_negatives(config.negatives),
                      save_max_length=save_max_length)
    return trainer.fit(source, resume=resume)


def describe(result: TrainResult) -> dict[str, Any]:
    """A short JSON-able summary of a finished run."""
    return {"output_dir": str(result.output_dir), "model_dir": str(result.model_dir), "steps": result.steps,
            "best_dev": result.best_score, "seconds": round(result.seconds, 1)}
