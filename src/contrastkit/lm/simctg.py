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
sentence encoder. The ``data`` section is ``contrastkit train``'s (``kind: single``: one text per example).
The loop is small on purpose: AdamW, linear warm-up and decay, gradient clipping, a JSONL log; no resume.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, model_validator

from ..config import (
    DataConfig,
    PathStr,
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


class SimctgTrain(_Section):
    """The optimisation."""

    output_dir: PathStr = "runs/simctg"
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=2e-5, gt=0.0)
    max_steps: int = Field(default=100, ge=1)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    seed: int = 42
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    log_every: int = Field(default=10, ge=1)


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


def simctg_step(model: Any, tokenizer: Any, texts: list[str], *, max_length: int, margin: float,
                weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's loss ``L_MLE + weight * L_CL`` (right-padded, so positions start at 0 in every row) and its
    parts as floats."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    padding_side="right")
    device = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    _, lm, cl = simctg(out.logits, out.hidden_states[-1], ids, mask, margin=margin)
    loss = lm + weight * cl
    return loss, {"loss": float(loss.detach()), "mle": float(lm.detach()), "cl": float(cl.detach())}


def train_simctg(config: SimctgRunConfig) -> SimctgResult:
    """Fine-tune ``config.model.name`` with SimCTG on ``config.data``; writes ``config.yaml``, ``metrics.jsonl``
    and ``model/`` (model + tokenizer, loadable by :func:`contrastkit.lm.load_causal_lm`) under
    ``train.output_dir``."""
    import random

    import yaml

    from ..run import load_training_examples, resolve_device, seed_everything
    from ..training.trainer import linear_warmup_decay
    from .causal import load_causal_lm

    tc = config.train
    out = Path(tc.output_dir)
    model_dir = out / "model"
    if model_dir.exists():
        raise TrainingError(f"{model_dir} already exists; choose another train.output_dir")
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
    model.train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(tc.max_steps, tc.warmup_steps))
    rng = random.Random(tc.seed)
    order: list[int] = []
    start, last = time.perf_counter(), {}
    with open(out / "metrics.jsonl", "w") as log:
        for step in range(1, tc.max_steps + 1):
            if len(order) < tc.batch_size:
                more = list(range(len(texts)))
                rng.shuffle(more)
                order += more
            batch = [texts[i] for i in order[:tc.batch_size]]
            del order[:tc.batch_size]
            loss, parts = simctg_step(model, tok, batch, max_length=config.model.max_length,
                                      margin=config.simctg.margin, weight=config.simctg.weight)
            if not math.isfinite(parts["loss"]):
                raise TrainingError(f"step {step}: the loss is not finite ({parts}); lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            opt.step()
            sched.step()
            last = parts
            if step % tc.log_every == 0 or step == tc.max_steps:
                log.write(json.dumps({"step": step, **parts, "lr": sched.get_last_lr()[0],
                                      "seconds": round(time.perf_counter() - start, 2)}) + "\n")
                log.flush()
    model.eval()
    model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    return SimctgResult(out, model_dir, tc.max_steps, time.perf_counter() - start, last)


__all__ = ["SimctgLoss", "SimctgModel", "SimctgResult", "SimctgRunConfig", "SimctgTrain", "build_simctg_config",
           "load_simctg_config", "simctg_step", "train_simctg"]
