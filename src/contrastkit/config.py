"""Typed run configuration: one YAML file describes a whole training run.

Every section is a pydantic model that forbids unknown keys, so a typo such as
``lerning_rate`` fails at load time naming the key, instead of being silently
ignored. The CLI (``contrastkit train CONFIG --set key=value``) and the Python API
(``RunConfig(...)``) build the same objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, model_validator

from .errors import ConfigError

PoolingName = Literal["cls", "cls_mlp", "mean", "first_last_avg", "last_token", "prompt",
                      # prompt readouts of decoder LMs (encoders/readouts.py), parameters under model.readout
                      "prompt_icl", "metaeol", "pretended_cot", "knowledge", "contrastive_prompt",
                      "token_prepending", "echo"]
Precision = Literal["auto", "fp32", "bf16"]


# Strict types: ``batch_size: true`` or ``lr: "fast"`` are errors, not 1 and a guess. Paths may be given
# as ``os.PathLike`` objects from Python; YAML's '3e-5' (a string in YAML 1.1) is read as a float by the loader.
PathStr = Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class DataConfig(_Section):
    """Where the training examples come from and what shape they have."""

    source: PathStr | list[PathStr] = Field(
        description="Path to a text/csv/tsv/jsonl file, 'hf:NAME' or 'embedded:NAME'; a list of them = several "
                    "sources (sampler 'single_source' batches within each).")
    format: Literal["text", "csv", "tsv", "jsonl"] | None = None
    kind: Literal["single", "pair", "triplet", "scored"] = "single"
    columns: list[str] | None = None
    split: str = "train"
    limit: int | None = Field(default=None, ge=1, description="Use only the first N examples.")
    streaming: bool = Field(default=False, description="Read the file lazily each epoch (larger than memory).")
    shuffle_buffer: int = Field(default=10_000, ge=1, description="Shuffle window when streaming.")


class LoraConfig(_Section):
    """LoRA adapters through PEFT (Hu et al., 2021): the backbone is frozen, low-rank updates train."""

    r: int = Field(default=8, ge=1, description="Rank of the low-rank updates.")
    alpha: float = Field(default=16.0, gt=0.0, description="Scale: updates are multiplied by alpha / r.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")
    target_modules: str | list[str] = Field(
        default="all-linear", description="Module names (or a PEFT pattern) to adapt; 'all-linear' = every "
                                          "linear layer of the blocks.")
    save: Literal["merged", "adapter"] = Field(
        default="merged", description="Save the adapters merged into the weights (a plain model dir that "
                                      "sentence-transformers loads) or alone (PEFT format, naming the base).")


class ModelConfig(_Section):
    """Backbone, pooling and training-time head."""

    backbone: PathStr = Field(description="HF name/path, a sentence-transformers dir, a .gguf file or an alias.")
    pooling: PoolingName = "mean"
    prompt_template: str = 'This sentence : "{text}" means in one word:"'
    max_length: int = Field(default=32, ge=1, description="Truncate training texts to this many tokens.")
    max_seq_length: int | None = Field(
        default=None, ge=1, description="Inference limit written into the saved model; default: the base "
                                        "model's (never the training max_length).")
    num_layers: int | None = Field(default=None, ge=1, description="Keep only the first k layers.")
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0, description="Override hidden/attention dropout.")
    attention_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    residual_dropout: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Dropout on each layer's output (for backbones without any)."
    )
    freeze_layers: int | None = Field(
        default=None, ge=0, description="Freeze the token embeddings and the first k layers (train the rest)."
    )
    lora: LoraConfig | None = Field(default=None, description="Train LoRA adapters instead of the backbone.")
    bias_only: bool = Field(
        default=False, description="BitFit: train only biases and normalization gains (LLaMA-style blocks have no "
                                   "biases, so there only the norms train).")
    bidirectional: bool = Field(
        default=False, description="Switch a decoder LM's self-attention to bidirectional (LLM2Vec); false = as the "
                                   "backbone was saved (a bidirectional contrastkit model stays bidirectional).")
    readout: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of a readout pooling (prompt, prompt_icl, metaeol, pretended_cot, "
                                          "knowledge, contrastive_prompt, token_prepending, echo), e.g. {layer: -2}.")

    @model_validator(mode="after")
    def _check_readout(self) -> ModelConfig:
        from .encoders.readouts import check_params

        try:
            check_params(self.pooling, self.readout)
        except ConfigError as e:
            raise ValueError(f"model.readout: {e}") from None
        return self


class LossConfig(BaseModel):
    """The objective: a registered loss ``name`` plus that loss's own keyword parameters.

    Extra keys are the loss function's keyword arguments (e.g. ``tau_plus`` for ``debiased``);
    they are checked against its signature at load time, so a misspelt parameter is named.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, strict=True)

    name: str = "infonce"
    temperature: float = Field(default=0.05, gt=0.0)

    def _signature(self) -> Any:
        import inspect

        from .losses import LOSSES

        return inspect.signature(LOSSES.get(self.name)).parameters

    @model_validator(mode="after")
    def _check_params(self) -> LossConfig:
        import inspect

        from .losses.inputs import SUPPLIED_INPUTS, UNSUPPORTED_LOSSES

        if self.name in UNSUPPORTED_LOSSES:
            raise ValueError(f"loss '{self.name}' cannot run from a config: {UNSUPPORTED_LOSSES[self.name]}")
        sig = self._signature()
        options = {k for k, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        for key in self.params:
            if key in SUPPLIED_INPUTS and key in options:
                raise ValueError(f"loss.{key} is a per-batch input the pipeline supplies "
                                 f"(from the {SUPPLIED_INPUTS[key]}); remove it from the config")
            if key not in options:
                raise ValueError(f"unknown key '{key}' for loss '{self.name}' (accepts: {', '.join(sorted(options))})")
        needed = [k for k in options if sig[k].default is inspect.Parameter.empty and k not in self.params
                  and k not in SUPPLIED_INPUTS]
        if needed:
            raise ValueError(f"loss '{self.name}' needs per-batch inputs ({', '.join(needed)}) that the trainer "
                             "does not supply; it can be called directly as a function")
        if self.temperature != type(self).model_fields["temperature"].default and "temperature" not in sig:
            raise ValueError(f"loss '{self.name}' has no temperature; remove loss.temperature")
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

    output_dir: PathStr = "runs/default"
    batch_size: int = Field(default=64, ge=1)
    grad_accumulation: int = Field(
        default=1, ge=1, description="Average gradients over k batches. Does NOT add in-batch negatives."
    )
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps to take; wins over epochs (the data loops as needed).")
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
    checkpoint_minutes: float | None = Field(
        default=10.0, gt=0, description="Also checkpoint when this much time passed since the last one "
                                        "(a kill never loses more); null = step-based only.")
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=10, ge=1)
    progress: bool = True

    def warmup_for(self, total_steps: int) -> int:
        """Linear warm-up steps of a run of ``total_steps`` optimizer steps."""
        return int(self.warmup_ratio * total_steps)


class EvalConfig(_Section):
    """Evaluation during training (SimCSE practice: select the best dev checkpoint)."""

    every: int | None = Field(default=125, ge=1, description="Evaluate every N optimizer steps; null = only at the end.")
    tasks: list[str] = Field(
        default=["STSBenchmark-dev"], description="STS dev tasks; when their data is missing the run trains "
                                                  "without evaluation (one warning); [] = no evaluation.")
    data_dir: PathStr | None = None
    select_best: bool = True


class SamplerConfig(_Section):
    """How examples are grouped into batches (see ``contrastkit.samplers``)."""

    name: Literal["random", "no_duplicates", "single_source", "clustered", "mined_batches"] = "random"
    groups_per_batch: int = Field(default=1, ge=1, description="single_source/clustered/mined_batches: groups "
                                                               "(sources, clusters, communities) mixed in a batch.")
    num_clusters: int | None = Field(default=None, ge=1, description="clustered: k of k-means (default n / batch_size).")
    neighbors: int = Field(default=10, ge=1, description="mined_batches: kNN graph degree.")
    community_size: int | None = Field(default=None, ge=2,
                                       description="mined_batches: target community size (default batch_size).")

    @model_validator(mode="after")
    def _check_options(self) -> SamplerConfig:
        owners = {"groups_per_batch": ("single_source", "clustered", "mined_batches"), "num_clusters": ("clustered",),
                  "neighbors": ("mined_batches",), "community_size": ("mined_batches",)}
        for key, names in owners.items():
            if getattr(self, key) != type(self).model_fields[key].default and self.name not in names:
                raise ValueError(f"sampler.{key} applies only to sampler {' / '.join(names)} (sampler is '{self.name}')")
        return self


class ViewsConfig(BaseModel):
    """How the views of a single text are made: a registered view ``name``, ``num_views`` (3+ = poly-view),
    ``apply_to`` and the view's own parameters (checked against it, like loss parameters)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, strict=True)

    name: str = "dropout"
    num_views: int = Field(default=2, ge=2, description="Views per text; 3+ is poly-view (mean loss over view pairs).")
    apply_to: Literal["positive", "both"] = Field(
        default="positive", description="Edit only the positive view(s), or every view (the anchor too).")

    @model_validator(mode="after")
    def _check_params(self) -> ViewsConfig:
        from .views.compose import VIEWS

        if self.name not in VIEWS:
            raise ValueError(f"unknown view '{self.name}'; known: {', '.join(VIEWS)}")
        spec = VIEWS[self.name]
        for key in self.params:
            if key not in spec.options:
                raise ValueError(f"unknown key '{key}' for view '{self.name}' (accepts: "
                                 f"{', '.join(sorted(spec.options)) or 'nothing'})")
        if self.apply_to != "positive" and not spec.edits_anchor:
            raise ValueError(f"views.apply_to does not apply to view '{self.name}' (its anchor is never edited)")
        if self.name == "span_sampling" and self.num_views != 2:
            raise ValueError("view 'span_sampling' makes exactly one (anchor, positive) pair: views.num_views must be 2")
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The view-specific parameters."""
        return dict(self.model_extra or {})


class TeacherConfig(_Section):
    """A frozen teacher encoder (distillation targets, dclr's reference, clustered/mined batches, mining)."""

    model: PathStr = Field(description="HF name/path, a sentence-transformers or contrastkit dir, or an alias.")
    pooling: PoolingName | None = None
    max_length: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=128, ge=1)
    false_negative_threshold: float = Field(
        default=0.9, ge=-1.0, le=1.0,
        description="bidirectional_margin: in-batch candidates above this teacher cosine are flagged false negatives.")


class MiningConfig(_Section):
    """Teacher-mined hard negatives turning (anchor, positive) pairs into triplets (``contrastkit.data.mining``)."""

    rank_window: tuple[StrictInt, StrictInt] = Field(
        default=(10, 50), strict=False, description="Keep teacher ranks lo <= r < hi (0 = best).")
    margin: float = Field(default=0.95, description="False-negative filter: relative factor or absolute gap.")
    margin_type: Literal["relative", "absolute"] = "relative"
    num_negatives: int = Field(default=1, ge=1)
    cache: PathStr | None = Field(default=None, description="Cache file (default <train.output_dir>/mined_negatives.jsonl).")

    @model_validator(mode="after")
    def _check_window(self) -> MiningConfig:
        lo, hi = self.rank_window
        if not 0 <= lo < hi:
            raise ValueError(f"mining.rank_window must be [lo, hi] with 0 <= lo < hi, got {[lo, hi]}")
        if self.num_negatives > hi - lo:
            raise ValueError(f"mining.num_negatives ({self.num_negatives}) exceeds the rank window size {hi - lo}")
        return self


# Losses whose hard negatives are plain extra candidates for every anchor (the ``infonce`` column
# layout), so a momentum queue can append its keys there.
QUEUE_LOSSES = ("infonce", "debiased", "hard_negative_weighting", "adaptive_temperature", "dclr")


class NegativesConfig(_Section):
    """Where a batch's negatives come from (see ``contrastkit.training.negatives``)."""

    source: Literal["in_batch", "cross_device", "cached", "momentum_queue"] = Field(
        default="in_batch", description="in_batch | cross_device (all ranks' embeddings) | cached (GradCache) | "
                                        "momentum_queue (MoCo queue of past keys).")
    chunk_size: int | None = Field(default=None, ge=1, description="cached: rows per forward chunk.")
    queue_size: int = Field(default=1024, ge=1, description="momentum_queue: past keys kept as extra negatives.")
    momentum: float = Field(default=0.995, ge=0.0, lt=1.0, description="momentum_queue: EMA factor m of the key encoder.")
    filter_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0,
        description="momentum_queue: drop queued keys whose cosine to an anchor of the batch exceeds this.")

    @model_validator(mode="after")
    def _check_options(self) -> NegativesConfig:
        owners = {"chunk_size": "cached", "queue_size": "momentum_queue", "momentum": "momentum_queue",
                  "filter_threshold": "momentum_queue"}
        for key, owner in owners.items():  # a non-default option of another source would do nothing
            if owner != self.source and getattr(self, key) != type(self).model_fields[key].default:
                raise ValueError(f"negatives.{key} applies only to source '{owners[key]}' "
                                 f"(source is '{self.source}')")
        if self.source == "cached" and self.chunk_size is None:
            raise ValueError("negatives.source 'cached' needs negatives.chunk_size")
        return self


class RunConfig(_Section):
    """A whole training run."""

    data: DataConfig
    model: ModelConfig
    loss: LossConfig = LossConfig()
    sampler: SamplerConfig = SamplerConfig()
    views: ViewsConfig = ViewsConfig()
    teacher: TeacherConfig | None = None
    mining: MiningConfig | None = None
    negatives: NegativesConfig = NegativesConfig()
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
        self._check_negatives()
        from .composition import check_composition

        check_composition(self)
        return self

    def _check_negatives(self) -> None:
        neg = self.negatives
        if neg.source == "cached" and neg.chunk_size is not None and neg.chunk_size >= self.train.batch_size:
            raise ValueError(f"negatives.chunk_size ({neg.chunk_size}) must be smaller than train.batch_size "
                             f"({self.train.batch_size}); otherwise GradCache only adds work")
        if neg.source == "momentum_queue":
            if self.loss.name not in QUEUE_LOSSES:
                raise ValueError(f"negatives.source 'momentum_queue' appends queued keys as candidates; loss "
                                 f"'{self.loss.name}' does not take them (use one of: {', '.join(QUEUE_LOSSES)})")
            if self.loss.params.get("hard_negative_weight", 1.0) != 1.0:
                raise ValueError("loss.hard_negative_weight != 1 cannot be combined with negatives.source "
                                 "'momentum_queue' (queued keys would be weighted as an anchor's own negatives)")


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


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader that rejects duplicate keys and reads '3e-5' as a float (as YAML 1.2 does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key given twice (YAML's default is a silent last-wins)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key]}, again at line {line}); "
                                "YAML would silently keep the last one", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_EXP_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """Parse YAML with :class:`_ConfigLoader` (safe, duplicate keys refused, '3e-5' a float)."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"--set {dotted}=...: expected a dotted key such as train.lr")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML, safely) to a config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), _parse_value(key.strip(), raw))
    return tree


def _parse_value(key: str, raw: str) -> Any:
    """A ``--set`` value: a YAML scalar, list or mapping; an empty value is null."""
    if raw == "":
        return None
    try:
        return parse_yaml(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"--set {key}={raw}: not a valid value ({problem}); write a number, true/false, "
                          "a string, or a YAML list such as [a, b] (quote text containing ':' or '[')") from None


def build_config(tree: dict[str, Any], origin: str = "<dict>") -> RunConfig:
    """Validate a config dict, raising ConfigError that names each bad key."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def read_config_tree(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; a missing file, bad YAML or a duplicate key is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid YAML: not UTF-8 text ({err})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(tree).__name__}")
    return tree


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config and apply ``--set`` overrides."""
    return build_config(apply_overrides(read_config_tree(path), overrides or []), origin=str(path))


def dump_config(config: RunConfig) -> str:
    """Serialise a config back to YAML (saved beside every run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def config_differences(old: RunConfig, new: RunConfig, ignore: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configs, as ``{key: (old, new)}``; ``ignore`` keys are left out."""
    skip = set(ignore)
    a, b = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    missing = object()
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if k not in skip and a.get(k, missing) != b.get(k, missing)}
