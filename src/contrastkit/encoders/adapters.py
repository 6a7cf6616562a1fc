"""LoRA adapters on any backbone through PEFT (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models").

:func:`apply_lora` wraps an :class:`~contrastkit.encoders.Encoder`'s backbone in a PEFT model: the base weights
are frozen and only the low-rank updates train. The wrapped backbone is an ordinary ``nn.Module`` to the
trainer: its checkpoints hold every tensor (base and adapter), so ``--resume`` rebuilds the same wrapped model
from the config and continues exactly. A trained encoder is saved either with the adapter merged into the
weights (a plain model directory that ``SentenceTransformer(path)`` loads) or as the adapter alone (PEFT's
``adapter_config.json`` + ``adapter_model.safetensors``, naming the base model), see :func:`save_backbone`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError("model.lora needs the 'peft' package (pip install contrastkit[lora])") from None
    return peft


def is_adapted(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is wrapped in PEFT adapters."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(backbone, PeftModel)


def apply_lora(backbone: nn.Module, *, r: int, alpha: float, dropout: float,
               target_modules: str | list[str], base_name: str) -> nn.Module:
    """Wrap ``backbone`` with LoRA adapters (base frozen); ``base_name`` is recorded as the adapter's base model."""
    peft = _peft()
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                             bias="none")
    try:
        wrapped = peft.get_peft_model(backbone, config)
    except ValueError as err:  # e.g. target modules that match nothing
        raise ConfigError(f"model.lora: {err}") from None
    wrapped.peft_config["default"].base_model_name_or_path = base_name
    return wrapped


def merged_backbone(backbone: nn.Module) -> nn.Module:
    """A copy of an adapted backbone with the adapters merged into its weights (the original stays adapted)."""
    return copy.deepcopy(backbone).merge_and_unload()


def save_backbone(backbone: nn.Module, directory: Path, *, merge: bool) -> dict[str, Any] | None:
    """Write ``backbone`` into ``directory``: merged weights, or the adapter alone (then return its metadata)."""
    if not is_adapted(backbone) or merge:
        (merged_backbone(backbone) if is_adapted(backbone) else backbone).save_pretrained(
            str(directory), safe_serialization=True)
        return None
    backbone.save_pretrained(str(directory))  # PEFT: adapter_config.json + adapter_model.safetensors
    backbone.get_base_model().config.save_pretrained(str(directory))
    config = backbone.peft_config["default"]
    return {"base": config.base_model_name_or_path, "r": config.r, "alpha": config.lora_alpha}


def load_adapted(backbone: nn.Module, directory: Path) -> nn.Module:
    """Attach the adapter saved in ``directory`` to ``backbone`` (the base model it names, already loaded)."""
    peft = _peft()
    missing = [f for f in ADAPTER_FILES if not (directory / f).is_file()]
    if missing:
        raise ConfigError(f"{directory}: adapter files missing ({', '.join(missing)})")
    return peft.PeftModel.from_pretrained(backbone, str(directory))
