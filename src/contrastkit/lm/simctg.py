"""The SimCTG fine-tuning stage: ``contrastkit lm simctg CONFIG`` (or :func:`train_simctg` from Python).

Su et al., 2022, "A Contrastive Framework for Neural Text Generation": fine-tune a causal LM on plain text with
``L_MLE + L_CL``, the token-level contrastive margin loss (:func:`contrastkit.losses.simctg.simctg`, margin
``rho`` 0.5 in the paper), so that the token representations of a text become less similar to each other
(more isotropic), which contrastive search then exploits. The paper trains GPT-2 small on Wikitext-103 (batch
128 sequences of 256 tokens, lr 2e-5, 40k steps); ``recipes/simctg-smollm2.yaml`` is a CPU-sized run on local
text.

Why a command of its own and not a ``loss.name`` of ``contrastkit train`` (the same reasons as ``lm mntp``):
SimCTG is a language-modelling objective over the tokens of one text and needs the causal LM with its head,
not an embedding loss over (anchor, positive) pairs; and its result is a causal LM for ``contrastkit generate``
and :func:`contrastkit.lm.load_causal_lm`, saved with ``save_pretrained`` under ``<output_dir>/model``, not a
sentence encoder. The ``data`` section is ``contrastkit train``'s (``kind: single``: one text per example), the
``train`` section is its too (plus ``warmup_steps``), and the run is the ordinary
:class:`~contrastkit.training.trainer.Trainer` fed the SimCTG step loss: checkpoints, ``--resume``,
``max_minutes``, ``checkpoint_minutes``, ``precision`` (fp32 by default here), ``grad_accumulation``, and a
``metrics.jsonl`` that logs ``loss``, ``mle`` and ``cl``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, model_validator

from ..config import (
    DataConfig,
    PathStr,
    Precision,
    TrainConfig,
    _format_validation_error,
    _Section,
    apply_overrides,
    read_config_tree,
)
from ..errors import ConfigError, TrainingError
from ..losses.simctg import simctg


class SimctgModel(_Section):
    """The causal LM to fine-tune and the training sequence length."""

    name: PathStr = Field(description="Causal LM: hub name, dir, .gguf file or alias (smollm2-135m, gemma3-270m).")
    max_length: int = Field(default=128, ge=2, description="Truncate training texts to this many tokens.")


class SimctgLoss(_Section):
    """SimCTG's contrastive term."""

    margin: float = Field(default=0.5, ge=0.0, le=2.0, description="rho, the margin (the paper: 0.5).")
    weight: float = Field(default=1.0, ge=0.0, description="Weight of L_CL (the paper: 1; 0 = plain MLE "
                                                            "fine-tuning, the baseline).")


class SimctgTrain(TrainConfig):
    """The optimisation: ``contrastkit train``'s ``train`` section with SimCTG's defaults, plus ``warmup_steps``."""

    output_dir: PathStr = "runs/simctg"
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=2e-5, gt=0.0)
    max_steps: int = Field(default=100, ge=1)
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps (or warmup_ratio, not both).")
    precision: Precision = "fp32"

    @model_validator(mode="after")
    def _one_warmup(self) -> SimctgTrain:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give train.warmup_steps or train.warmup_ratio, not both")
        return self

    def warmup_for(self, total_steps: int) -> int:
        """``warmup_steps`` when set, else ``warmup_ratio`` of the run."""
        return self.warmup_steps or super().warmup_for(total_steps)


class SimctgRunConfig(_Section):
    """A whole SimCTG run."""

    data: DataConfig
    model: SimctgModel
    simctg: SimctgLoss = SimctgLoss()
    train: SimctgTrain = SimctgTrain()

    @model_validator(mode="after")
    def _check(self) -> SimctgRunConfig:
        if self.data.kind != "single":
            raise ValueError(f"SimCTG reads plain text: data.kind must be 'single', not '{self.data.kind}'")
        if self.data.streaming:
            raise ValueError("SimCTG reads its texts into memory: data.streaming is not supported")
        return self


def build_simctg_config(tree: dict[str, Any], origin: str = "<dict>") -> SimctgRunConfig:
    """Validate a SimCTG config dict, raising ConfigError that names each bad key."""
    try:
        return SimctgRunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_simctg_config(path: str | Path, overrides: list[str] | None = None) -> SimctgRunConfig:
    """Read a SimCTG YAML config (e.g. ``recipes/simctg-smollm2.yaml``) and apply ``--set`` overrides."""
    return build_simctg_config(apply_overrides(read_config_tree(path), overrides or []), origin=str(path))


@dataclass
class SimctgResult:
    """Where the run wrote its model and how its losses ended."""

    output_dir: Path
    model_dir: Path
    steps: int
    seconds: float
    last: dict[str, float]


def simctg_losses(model: Any, tokenizer: Any, texts: list[str], *, max_length: int, margin: float,
                  weight: float = 1.0) -> dict[str, torch.Tensor]:
    """One batch's losses: ``loss`` = ``L_MLE + weight * L_CL`` and its parts ``mle`` and ``cl`` (right-padded, so
    positions start at 0 in every row)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    padding_side="right")
    device = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    _, lm, cl = simctg(out.logits, out.hidden_states[-1], ids, mask, margin=margin)
    return {"loss": lm + weight * cl, "mle": lm, "cl": cl}


def simctg_step(model: Any, tokenizer: Any, texts: list[str], *, max_length: int, margin: float,
                weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's loss ``L_MLE + weight * L_CL`` and its parts as floats (see :func:`simctg_losses`)."""
    losses = simctg_losses(model, tokenizer, texts, max_length=max_length, margin=margin, weight=weight)
    return losses["loss"], {k: float(v.detach()) for k, v in losses.items()}


def train_simctg(config: SimctgRunConfig, *, resume: bool = False, allow_changes: Iterable[str] = ()) -> SimctgResult:
    """Fine-tune ``config.model.name`` with SimCTG on ``config.data``; writes ``config.yaml``, ``metrics.jsonl``,
    checkpoints and ``model/`` (model + tokenizer, loadable by :func:`contrastkit.lm.load_causal_lm`) under
    ``train.output_dir``; with ``resume`` continues its latest checkpoint (changed keys as ``contrastkit train``).
    ``last`` of the result holds the losses of the last logged row."""
    import yaml

    from ..run import check_resume_changes, load_training_examples, resolve_device, seed_everything
    from ..samplers import RandomBatches
    from ..training.checkpoint import latest_checkpoint
    from ..training.trainer import Trainer
    from .causal import load_causal_lm

    tc = config.train
    out = Path(tc.output_dir)
    if resume:
        check_resume_changes(config, allow_changes, build=build_simctg_config)
    elif latest_checkpoint(out / "checkpoints") is not None or (out / "model").exists():
        raise TrainingError(f"{out} already holds a run; continue it with contrastkit lm simctg --resume {out}, "
                            "or choose another train.output_dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    examples, _ = load_training_examples(config.data)
    texts = [ex.texts[0] for ex in examples if ex.texts and ex.texts[0].strip()]
    if not texts:
        raise ConfigError("SimCTG: the data holds no text")
    seed_everything(tc.seed)
    model, tok = load_causal_lm(config.model.name, device=resolve_device(tc.device))

    def step_loss(lm: Any, batch: list[str]) -> dict[str, torch.Tensor]:
        return simctg_losses(lm, tok, batch, max_length=config.model.max_length, margin=config.simctg.margin,
                             weight=config.simctg.weight)

    def save(path: Path) -> None:
        model.save_pretrained(str(path))
        tok.save_pretrained(str(path))

    result = Trainer.for_step_loss(model, step_loss, tc, save=save).fit(
        RandomBatches(texts, tc.batch_size, seed=tc.seed), resume=resume)
    model.eval()
    last = {k: result.history[-1][k] for k in ("loss", "mle", "cl")} if result.history else {}
    return SimctgResult(out, result.model_dir, result.steps, result.seconds, last)


__all__ = ["SimctgLoss", "SimctgModel", "SimctgResult", "SimctgRunConfig", "SimctgTrain", "build_simctg_config",
           "load_simctg_config", "simctg_losses", "simctg_step", "train_simctg"]
