"""Bidirectional attention for decoder LMs: LLM2Vec's first step, on transformers 5's own hooks.

BehnamGhader et al., 2024, "LLM2Vec: Large Language Models Are Secretly Powerful Text Encoders" turn a
decoder-only LM into a text encoder in three steps: (1) every token attends to every other token
(the causal mask is replaced by an all-ones mask), (2) masked next-token prediction
(:mod:`contrastkit.lm.mntp`) teaches the model to use the future context, (3) unsupervised SimCSE.
Their package subclasses each model (``LlamaBiModel`` ...) and pins transformers <= 4.40.

transformers 5 has the switch built in, so no model code is copied or patched here:

* ``config.is_causal = False`` makes ``masking_utils.create_causal_mask`` (and
  ``create_sliding_window_causal_mask``) build a *bidirectional* mask from the padding mask, for every
  model that builds its masks through them (Llama, Mistral, Qwen2/3, Gemma-3, SmolLM2 = Llama, ...);
* each attention module's public ``is_causal`` attribute, which SDPA / flash-attention read when no mask
  tensor is passed (an unpadded batch), is set to False as well; otherwise an unpadded batch would still
  be causal under SDPA while a padded one is not.

Gemma-3's sliding-window layers become the symmetric window ``|i - j| <= sliding_window`` (transformers'
bidirectional sliding mask); sentences are far shorter than the window (512 for Gemma-3-270m).

:func:`make_bidirectional` checks its own effect on a two-token probe (the first token's state must change
when the second token changes, and must not before), so an architecture that ignores the hooks is refused
instead of silently training a causal model. A saved model records the switch in ``contrastkit.json``
(``"bidirectional": true``); the written ``config.json`` stays a plain causal config (:func:`causal_config`),
because transformers alone would honour ``is_causal: false`` only for padded batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


def is_bidirectional(model: nn.Module) -> bool:
    """Whether ``model``'s self-attention has been switched to bidirectional by :func:`make_bidirectional`."""
    return getattr(getattr(model, "config", None), "is_causal", True) is False


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]


def attends_causally(model: nn.Module) -> bool:
    """Whether every self-attention module of ``model`` is causal (a decoder LM not switched to bidirectional)."""
    mods = _attention_modules(model)
    return bool(mods) and not is_bidirectional(model) and all(m.is_causal for m in mods)


@torch.no_grad()
def _first_token_sees_the_second(model: nn.Module) -> bool:
    """Probe: does the first token's last hidden state depend on the second token?"""
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab < 3:
        raise ConfigError("model.bidirectional: the backbone's vocabulary is too small to probe its attention")
    device = next(model.parameters()).device
    ids = torch.tensor([[1, vocab - 1], [1, vocab - 2]], device=device)
    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    finally:
        model.train(was_training)
    states = out.hidden_states[-1] if getattr(out, "hidden_states", None) else out[0]
    first = states[:, 0].float()
    return not torch.allclose(first[0], first[1], rtol=1e-5, atol=1e-6)


def make_bidirectional(model: nn.Module) -> nn.Module:
    """Switch a decoder LM's self-attention to bidirectional (LLM2Vec step 1), in place; returns ``model``.

    Works on the bare model (``LlamaModel``), a ``*ForCausalLM`` or a PEFT-wrapped one (the config and the
    attention modules are shared). Raises ConfigError for a model that already attends both ways (an encoder
    such as BERT: the option would do nothing) or one whose attention ignores transformers' hooks.
    """
    if is_bidirectional(model):
        return model
    name = type(model).__name__
    if _first_token_sees_the_second(model):
        raise ConfigError(f"model.bidirectional: {name} already attends in both directions (an encoder); the "
                          "option applies to decoder LMs")
    modules = _attention_modules(model)
    model.config.is_causal = False
    for m in modules:
        m.is_causal = False
    if not _first_token_sees_the_second(model):
        model.config.__dict__.pop("is_causal", None)
        for m in modules:
            m.is_causal = True
        raise ConfigError(f"model.bidirectional: {name} ({getattr(model.config, 'model_type', '?')}) does not build "
                          "its attention mask through transformers' masking_utils, so it cannot be switched to "
                          "bidirectional attention here")
    return model


@contextlib.contextmanager
def causal_config(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model.config`` carries no ``is_causal`` flag (what ``save_pretrained`` writes)."""
    config: Any = getattr(model, "config", None)
    had = config is not None and "is_causal" in config.__dict__
    value = config.__dict__.pop("is_causal") if had else None
    try:
        yield
    finally:
        if had:
            config.is_causal = value


__all__ = ["attends_causally", "causal_config", "is_bidirectional", "make_bidirectional"]
