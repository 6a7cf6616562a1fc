"""The MNTP training stage (LLM2Vec step 2): ``contrastkit lm mntp CONFIG``.

BehnamGhader et al., 2024, "LLM2Vec: Large Language Models Are Secretly Powerful Text Encoders". A decoder LM
whose attention was made bidirectional (``model.bidirectional: true``) learns to use the future context by
masked next-token prediction: mask a fraction of the tokens, predict each masked token from the previous
position's output through the LM head (:func:`contrastkit.losses.mntp.mntp`). The reference trains LoRA
adapters (r 16, alpha 32, dropout 0.05 on q/k/v/o/gate/up/down) for 1000 steps of 32 sequences, masking
20 % of the tokens with ``_`` (its "blank" mask token) in BERT's 80/10/10 way.

Why a command of its own and not a ``loss.name`` of ``contrastkit train``: MNTP is a language-modelling
objective over tokens, not an embedding loss over (anchor, positive) pairs. It needs the LM head and a
masked *input*, and none of ``views``, ``negatives``, ``sampler``, ``teacher`` or ``mining`` mean anything
for it. Its own small config (``data``, ``model``, ``mntp``, ``train``, ``eval``; the sections shared with
``contrastkit train`` are the same classes) refuses those keys by construction, while the run itself is the
ordinary :class:`~contrastkit.training.trainer.Trainer` (AdamW, schedule, bf16, LoRA, checkpoints, exact
``--resume``, ``max_minutes``, STS dev evaluation of the bidirectional encoder) fed an MNTP embed function
and the pure MNTP loss. The trained model is saved as any contrastkit model (the frozen LM head is not part
of it: for tied-embedding LMs such as SmolLM2 and Gemma-3 it is the embedding matrix), so stage 3
(``contrastkit train recipes/llm2vec-2-simcse.yaml``) starts from ``<output_dir>/model``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, model_validator
from torch import Tensor

from ..config import (DataConfig, EvalConfig, ModelConfig, TrainConfig, _format_validation_error, _Section,
                      apply_overrides, dump_config, read_config_tree)
from ..errors import ConfigError
from ..losses.mntp import mask_tokens, mntp
from ..training.batch import Embedded


class MaskingConfig(_Section):
    """Which tokens MNTP masks and what replaces them (LLM2Vec's ``mlm_probability``, ``mask_token_type``)."""

    probability: float = Field(default=0.2, gt=0.0, lt=1.0, description="Share of the tokens masked (LLM2Vec: 0.2).")
    token: str = Field(
        default="_", description="Token that replaces a masked one when the tokenizer has no mask token "
                                 "('_' = LLM2Vec's 'blank'); it must be one token of the vocabulary.")
    replace: float = Field(default=0.8, ge=0.0, le=1.0,
                           description="Of the masked tokens, the share replaced by the mask token (1.0 = all).")
    randomize: float = Field(default=0.1, ge=0.0, le=1.0,
                             description="Of the masked tokens, the share replaced by a random token.")

    @model_validator(mode="after")
    def _check_shares(self) -> MaskingConfig:
        if self.replace + self.randomize > 1.0:
            raise ValueError(f"mntp.replace + mntp.randomize must be at most 1 (got {self.replace + self.randomize})")
        return self


class MntpRunConfig(_Section):
    """A whole MNTP run: the shared sections of ``contrastkit train`` plus ``mntp``."""

    data: DataConfig
    model: ModelConfig
    mntp: MaskingConfig = MaskingConfig()
    train: TrainConfig = TrainConfig(output_dir="runs/mntp")
    eval: EvalConfig = EvalConfig(tasks=[])

    @model_validator(mode="after")
    def _check(self) -> MntpRunConfig:
        if self.data.kind != "single":
            raise ValueError(f"MNTP reads plain text: data.kind must be 'single', not '{self.data.kind}'")
        from ..encoders.readouts import READOUTS

        if self.model.pooling in READOUTS:
            raise ValueError(f"model.pooling '{self.model.pooling}' is a prompt readout; MNTP trains on plain text "
                             "(use mean or last_token; the pooling only serves dev evaluation and the saved model)")
        return self


def build_mntp_config(tree: dict[str, Any], origin: str = "<dict>") -> MntpRunConfig:
    """Validate an MNTP config dict, raising ConfigError that names each bad key."""
    try:
        return MntpRunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_mntp_config(path: str | Path, overrides: list[str] | None = None) -> MntpRunConfig:
    """Read an MNTP YAML config (e.g. ``recipes/llm2vec-1-mntp.yaml``) and apply ``--set`` overrides."""
    return build_mntp_config(apply_overrides(read_config_tree(path), overrides or []), origin=str(path))


# -- the pieces the trainer is given --------------------------------------------------------------

def mask_token_id(tokenizer: Any, token: str) -> int:
    """The tokenizer's own mask token, else ``token`` (one vocabulary entry; an unknown one is refused)."""
    if getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ConfigError(f"mntp.token {token!r} is not a token of this vocabulary; pick one that is "
                          "(LLM2Vec uses '_')")
    return int(tid)


class LMHead:
    """The LM head's weight (V, d) of an encoder's backbone: the input embeddings when they are tied (they then
    train or stay frozen with them), else ``lm_head.weight`` loaded once from ``source`` and kept frozen."""

    def __init__(self, backbone: Any, source: str) -> None:
        config = backbone.config
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None)
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self._weight: Tensor | None = None
        if not self.tied:
            self._weight = _load_untied_head(source)

    def weight(self, encoder: Any) -> Tensor:
        """The (V, d) weight on the encoder's device."""
        if self.tied:
            return encoder.backbone.get_input_embeddings().weight
        assert self._weight is not None
        if self._weight.device != encoder.device:
            self._weight = self._weight.to(encoder.device)
        return self._weight


def _load_untied_head(source: str) -> Tensor:
    from transformers import AutoModelForCausalLM

    from ..encoders.backbones import resolve_alias
    from .gguf import convert_gguf

    path = resolve_alias(source)
    if path.endswith(".gguf"):
        path = str(convert_gguf(path))
    try:
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ConfigError(f"MNTP needs the LM head of '{source}', which has untied output embeddings; it could not "
                          f"be loaded as a causal LM: {err}") from None
    head = lm.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ConfigError(f"MNTP: '{source}' has no bias-free LM head")
    return head.weight.detach().clone().requires_grad_(False)


class MntpEmbed:
    """The trainer's embed function for MNTP: tokenize plain text, mask, run the backbone.

    Returns ``Embedded(anchor=last hidden states (B, T, d), positive=LM head weight (V, d),
    extras={'labels': (B, T)})`` for :func:`mntp_loss`. Masks are drawn from torch's global RNG, which the
    trainer checkpoints, so a resumed run masks exactly as an uninterrupted one.
    """

    def __init__(self, tokenizer: Any, head: LMHead, masking: MaskingConfig) -> None:
        self.head = head
        self.masking = masking
        self.mask_id = mask_token_id(tokenizer, masking.token)
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.vocab_size = len(tokenizer)

    def __call__(self, encoder: Any, batch: Sequence[Any]) -> Embedded:
        texts = [ex.texts[0] for ex in batch]
        enc = encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_length,
                                return_tensors="pt")
        ids, mask = enc["input_ids"].to(encoder.device), enc["attention_mask"].to(encoder.device)
        masked, labels = mask_tokens(ids, mask, probability=self.masking.probability, mask_id=self.mask_id,
                                     vocab_size=self.vocab_size, special_ids=self.special_ids,
                                     replace=self.masking.replace, randomize=self.masking.randomize)
        out = encoder.backbone(input_ids=masked, attention_mask=mask, return_dict=True)
        return Embedded(out.last_hidden_state, self.head.weight(encoder), None, {"labels": labels})


def mntp_loss(softcap: float | None = None) -> Any:
    """The trainer's loss function: :func:`contrastkit.losses.mntp.mntp` in the trainer's calling convention."""

    def loss(hidden: Tensor, vocab: Tensor, negatives: Tensor | None = None, *, labels: Tensor) -> Tensor:
        return mntp(hidden, vocab, labels, softcap=softcap)

    return loss


# -- the run ------------------------------------------------------------------------------------

def resume_mntp_config(output_dir: str | Path, overrides: list[str] | None = None) -> MntpRunConfig:
    """The config saved in an MNTP run directory, with ``--set`` overrides applied."""
    from ..run import resume_config

    return resume_config(output_dir, overrides, build=build_mntp_config)


def train_mntp(config: MntpRunConfig, *, resume: bool = False, allow_changes: Iterable[str] = ()) -> Any:
    """Run MNTP as ``config`` describes; writes checkpoints, metrics and ``model/`` under ``train.output_dir``."""
    from ..errors import TrainingError
    from ..run import (build_eval, build_training_encoder, check_resume_changes, load_training_examples,
                       resolve_device, seed_everything)
    from ..samplers import RandomBatches, StreamingBatches
    from ..training.checkpoint import latest_checkpoint
    from ..training.trainer import Trainer

    out = Path(config.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        check_resume_changes(config, allow_changes, build=build_mntp_config)
    elif latest_checkpoint(out / "checkpoints") is not None:
        raise TrainingError(f"{out} already holds checkpoints; continue that run with contrastkit lm mntp --resume "
                            f"{out}, or choose another train.output_dir")
    if os.environ.get("RANK", "0") == "0":
        (out / "config.yaml").write_text(dump_config(config))  # type: ignore[arg-type]
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    seed, size = config.train.seed, config.train.batch_size
    if config.data.streaming:
        from ..run import stream_training_examples

        source: Any = StreamingBatches(lambda: stream_training_examples(config.data), size, seed=seed,
                                       buffer_size=config.data.shuffle_buffer)
    else:
        examples, _ = load_training_examples(config.data)
        source = RandomBatches(examples, size, seed=seed)
    seed_everything(seed)
    encoder, save_max_length = build_training_encoder(config.model)
    encoder = encoder.to(resolve_device(config.train.device))
    head = LMHead(encoder.backbone, str(config.model.backbone))
    trainer = Trainer(encoder, mntp_loss(head.softcap), MntpEmbed(encoder.tokenizer, head, config.mntp), config.train,
                      eval_fn=build_eval(config.eval, precision=config.train.precision), eval_every=config.eval.every,
                      select_best=config.eval.select_best, save_max_length=save_max_length)
    return trainer.fit(source, resume=resume)


__all__ = ["LMHead", "MaskingConfig", "MntpEmbed", "MntpRunConfig", "build_mntp_config", "load_mntp_config",
           "mask_token_id", "mntp_loss", "resume_mntp_config", "train_mntp"]
