"""Text in, text out: ``generate(model, tokenizer, prompts, strategy=..., **params)`` over the decoders."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .decoders import (
    contrastive_decoding,
    contrastive_input_decoding,
    contrastive_search,
    dola,
    greedy_search,
    sample,
)

STRATEGIES: dict[str, Callable[..., Any]] = {
    "greedy": greedy_search,
    "sample": sample,
    "contrastive_search": contrastive_search,
    "contrastive_decoding": contrastive_decoding,
    "dola": dola,
    "contrastive_input_decoding": contrastive_input_decoding,
}
"""Decoder of each strategy name (top-k, nucleus and typical sampling are ``sample`` with top_k/top_p/typical_p)."""

_TENSOR_PARAMS = {"contrastive_input_ids", "contrastive_attention_mask"}
"""Decoder parameters ``generate()`` fills from text (``contrastive_prompts``) instead of taking them."""


@dataclass
class Completion:
    """One prompt's continuation: its text, token ids (EOS included) and why it stopped (``stop``: EOS,
    ``length``: ``max_new_tokens``)."""

    text: str
    token_ids: list[int]
    finish_reason: str


def infer_strategy(params: dict[str, Any]) -> str:
    """The strategy ``generate()`` would pick from its parameters, as transformers' ``generate()`` did."""
    if params.get("amateur") is not None or params.get("amateur_layer") is not None:
        return "contrastive_decoding"
    if params.get("dola_layers") is not None:
        return "dola"
    if params.get("contrastive_prompts") is not None:
        return "contrastive_input_decoding"
    if params.get("penalty_alpha") and (params.get("top_k") or 0) > 1:
        return "contrastive_search"
    return "sample" if params.get("do_sample") else "greedy"


def strategy_parameters(strategy: str) -> list[str]:
    """The keyword parameters a strategy accepts in :func:`generate` (contrastive input decoding takes
    ``contrastive_prompts``, texts, where its decoder takes token tensors)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    sig = inspect.signature(STRATEGIES[strategy])
    names = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if _TENSOR_PARAMS & set(names):
        names = ["contrastive_prompts", *(n for n in names if n not in _TENSOR_PARAMS)]
    return names


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, strategy: str | None = None,
             batch_size: int = 16, add_special_tokens: bool = True, **params: Any) -> list[Completion]:
    """Continue each prompt with one of :data:`STRATEGIES` (``None``: inferred from ``params`` as
    :func:`infer_strategy` does); ``params`` are the decoder's (``max_new_tokens``, ``top_k``,
    ``penalty_alpha``, ...). A parameter the strategy does not take is an error, never ignored.

    Prompts are batched ``batch_size`` at a time, left-padded; ``eos_token_id`` defaults to the model's
    generation config, ``pad_token_id`` to the tokenizer's pad token. Contrastive input decoding takes
    ``contrastive_prompts``: one contrastive text per prompt (the prompt with one attribute changed).
    """
    strategy = strategy or infer_strategy(params)
    accepted = strategy_parameters(strategy)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"strategy '{strategy}' takes no {', '.join(unknown)} (it takes {', '.join(accepted)})")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    params.setdefault("pad_token_id", tokenizer.pad_token_id)
    contrastive = params.pop("contrastive_prompts", None)
    if "contrastive_prompts" in accepted and (contrastive is None or len(contrastive) != len(prompts)
                                              or isinstance(contrastive, str)):
        raise ConfigError(f"strategy '{strategy}' needs contrastive_prompts: a list of one contrastive text per "
                          f"prompt ({len(prompts)})")
    decoder = STRATEGIES[strategy]
    results: list[Completion] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        enc = tokenizer(chunk, padding=True, return_tensors="pt", padding_side="left",
                        add_special_tokens=add_special_tokens)
        if contrastive is not None:
            other = tokenizer(list(contrastive[start:start + batch_size]), padding=True, return_tensors="pt",
                              padding_side="left", add_special_tokens=add_special_tokens)
            params["contrastive_input_ids"] = other["input_ids"]
            params["contrastive_attention_mask"] = other["attention_mask"]
        out = decoder(model, enc["input_ids"], enc["attention_mask"], **params)
        for ids, done in zip(out.new_tokens(), out.finished.tolist()):
            text_ids = ids[:-1] if done else ids
            results.append(Completion(tokenizer.decode(text_ids, skip_special_tokens=True), ids,
                                      "stop" if done else "length"))
    return results
