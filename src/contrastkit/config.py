"""Typed run configuration: one YAML file describes a whole training run.

Every section is a pydantic model that forbids unknown keys, so a typo such as
``lerning_rate`` fails at load time naming the key, instead of being silently
ignored. The CLI (``contrastkit train CONFIG --set key=value``) and the Python API
(``RunConfig(...)``) build the same objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

PoolingName = Literal["cls", "cls_mlp", "mean", "first_last_avg", "last_token", "prompt"]
Precision = Literal["auto", "fp32", "bf16"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the training examples come from and what shape they have."""

    source: str = Field(description="Path to a text/csv/tsv/jsonl file, 'hf:NAME' or 'embedded:NAME'.")
    format: Literal["text", "csv", "tsv", "jsonl"] | None = None
    kind: Literal["single", "pair", "triplet"] = "single"
    columns: list[str] | None = None
    split: str = "train"
    limit: int | None = Field(default=None, ge=1, description="Use only the first N examples.")
    streaming: bool = Field(default=False, description="Read the file lazily each epoch (larger than memory).")
    shuffle_buffer: int = Field(default=10_000, ge=1, description="Shuffle window when streaming.")


class ModelConfig(_Section):
    """Backbone, pooling and training-time head."""

    backbone: str = Field(description="HF name/path, a sentence-transformers dir, a .gguf file or an alias.")
    pooling: PoolingName = "mean"
    prompt_template: str = 'This sentence : "{text}" means in one word:"'
    max_length: int = Field(default=32, ge=1)
    num_layers: int | None = Field(default=None, ge=1, description="Keep only the first k layers.")
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0, description="Override hidden/attention dropout.")
    attention_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    residual_dropout: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Dropout on each layer's output (for backbones without any)."
    )
    freeze_layers: int | None = Field(
        default=None, ge=0, description="Freeze the token embeddings and the first k layers (train the rest)."
    )


class LossConfig(BaseModel):
    """The objective: a registered loss ``name`` plus that loss's own keyword parameters.

    Extra keys are the loss function's keyword arguments (e.g. ``tau_plus`` for ``debiased``);
    they are checked against its signature at load time, so a misspelt parameter is named.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "infonce"
    temperature: float = Field(default=0.05, gt=0.0)

    def _signature(self) -> Any:
        import inspect

        from .losses import LOSSES

        return inspect.signature(LOSSES.get(self.name)).parameters

    @model_validator(mode="after")
    def _check_params(self) -> LossConfig:
        import inspect

        sig = self._signature()
        options = {k for k, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        for key in self.params:
            if key not in options:
                raise ValueError(f"unknown key '{key}' for loss '{self.name}' (accepts: {', '.join(sorted(options))})")
        needed = [k for k in options if sig[k].default is inspect.Parameter.empty and k not in self.params]
        if needed:
            raise ValueError(f"loss '{self.name}' needs per-batch inputs ({', '.join(needed)}) that the trainer "
                             "does not supply; it can be called directly as a function")
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The loss-specific keyword parameters (everything but ``name``)."""
        return dict(self.model_extra or {})

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments to bind to the loss function."""
        return {"temperature": self.temperature, **self.params} if "temperature" in self._signature() else self.params


class TrainConfig(_Section):
    """Optimisation, checkpointing and logging."""

    output_dir: str = "runs/default"
    batch_size: int = Field(default=64, ge=1)
    grad_accumulation: int = Field(
        default=1, ge=1, description="Average gradients over k batches. Does NOT add in-batch negatives."
    )
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(
        default=None, gt=0, description="Stop cleanly (checkpoint, evaluate, save) after this much training time.")
    lr: float = Field(default=3e-5, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    warmup_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    precision: Precision = "auto"
    length_buckets: int = Field(default=2, ge=1, description="Forward each batch as k length-sorted chunks (less padding).")
    num_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads (fewer than the free cores is faster on a busy machine).")
    device: str = Field(default="auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...")
    seed: int = 42
    checkpoint_every: int = Field(default=250, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=10, ge=1)
    progress: bool = True


class EvalConfig(_Section):
    """Evaluation during training (SimCSE practice: select the best dev checkpoint)."""

    every: int | None = Field(default=125, ge=1, description="Evaluate every N optimizer steps; null = only at the end.")
    tasks: list[str] = ["STSBenchmark-dev"]
    data_dir: str | None = None
    select_best: bool = True


class SamplerConfig(_Section):
    """How examples are grouped into batches."""

    name: Literal["random", "no_duplicates"] = "random"


class RunConfig(_Section):
    """A whole training run."""

    data: DataConfig
    model: ModelConfig
    loss: LossConfig = LossConfig()
    sampler: SamplerConfig = SamplerConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        if self.data.kind == "single" and self.loss.params.get("symmetric"):
            raise ValueError("loss.symmetric needs data.kind 'pair' or 'triplet' (unsupervised views are symmetric already)")
        if self.sampler.name != "random" and self.data.streaming:
            raise ValueError(f"sampler '{self.sampler.name}' needs the data in memory; set data.streaming=false")
        if self.model.freeze_layers is not None and self.model.num_layers is not None \
                and self.model.freeze_layers >= self.model.num_layers:
            raise ValueError("model.freeze_layers must be smaller than model.num_layers (nothing left to train)")
        if self.model.pooling == "prompt" and "{text}" not in self.model.prompt_template:
            raise ValueError("model.prompt_template must contain '{text}'")
        return self


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"  missing required key '{key}'")
        else:
            lines.append(f"  '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars) to a config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), _parse_scalar(raw))
    return tree


def _parse_scalar(raw: str) -> Any:
    """YAML scalar, with '3e-5'-style floats (YAML 1.1 reads them as strings) made numbers."""
    if raw == "":
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def build_config(tree: dict[str, Any], origin: str = "<dict>") -> RunConfig:
    """Validate a config dict, raising ConfigError that names each bad key."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config and apply ``--set`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(tree).__name__}")
    return build_config(apply_overrides(tree, overrides or []), origin=str(path))


def dump_config(config: RunConfig) -> str:
    """Serialise a config back to YAML (saved beside every run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
