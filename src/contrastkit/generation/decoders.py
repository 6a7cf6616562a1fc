"""Decoders as functions over a causal LM and its KV cache: greedy, sampling (top-k, nucleus, typical), contrastive
search, contrastive decoding, DoLa and contrastive input decoding.

Every decoder takes a left-padded batch (``input_ids``, ``attention_mask`` ``(B, T)``), runs the prompt once into a
``transformers`` ``DynamicCache`` and then one token per step, and returns a :class:`GenerationOutput`. Parameter
names follow ``transformers``' ``generate()``. A row that emits an EOS token stops (pad tokens follow it) while the
others continue. The decoders know nothing of tokenizers or serving (see :mod:`contrastkit.generation.api`).

transformers 5 removed contrastive search and DoLa from ``generate()`` (they now live in Hub repositories that
need ``trust_remote_code``); these are written from the papers and checked token for token against slow
references without a cache (``tests/test_generation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .processors import NEG_INF, draw, plausibility_mask, warp
from .processors import repetition_penalty as apply_repetition_penalty

EosIds = int | Sequence[int] | None


@dataclass
class GenerationOutput:
    """What a decoder returns.

    ``sequences`` ``(B, T + n)``: the left-padded prompts followed by the new tokens (pad after a row's EOS);
    ``prompt_length``: ``T``; ``num_new_tokens`` ``(B,)``: new tokens per row, its EOS included;
    ``finished`` ``(B,)``: whether the row ended with EOS (else it reached ``max_new_tokens``).
    """

    sequences: Tensor
    prompt_length: int
    num_new_tokens: Tensor
    finished: Tensor

    def new_tokens(self) -> list[list[int]]:
        """Each row's generated token ids (its EOS included, the padding after it not)."""
        new = self.sequences[:, self.prompt_length:].tolist()
        return [row[:n] for row, n in zip(new, self.num_new_tokens.tolist())]


# ---------------------------------------------------------------------------------------------- shared machinery

def _positions(mask: Tensor) -> Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _forward(model: nn.Module, ids: Tensor, mask: Tensor, cache: Any, *, hidden: bool = False) -> Any:
    """Run ``ids`` (the last ``ids.shape[1]`` columns of ``mask``) through ``model`` into ``cache``."""
    return model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask)[:, -ids.shape[1]:],
                 cache=cache, use_cache=True, output_hidden_states=hidden, logits_to_keep=1)


def _new_cache(model: nn.Module) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _eos_ids(model: nn.Module, eos_token_id: EosIds, device: torch.device) -> Tensor:
    if eos_token_id is None:
        gen = getattr(model, "generation_config", None)
        eos_token_id = getattr(gen, "eos_token_id", None)
        if eos_token_id is None:
            eos_token_id = getattr(model.config, "eos_token_id", None)
    ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    return torch.tensor(ids, dtype=torch.long, device=device)


def _pad_id(model: nn.Module, pad_token_id: int | None, eos: Tensor) -> int:
    if pad_token_id is not None:
        return int(pad_token_id)
    for src in (getattr(model, "generation_config", None), model.config):
        pid = getattr(src, "pad_token_id", None)
        if isinstance(pid, int):
            return pid
    return int(eos[0]) if eos.numel() else 0


class _Batch:
    """The growing left-padded batch: tokens, attention mask, which rows are done."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, *, max_new_tokens: int,
                 eos_token_id: EosIds, pad_token_id: int | None) -> None:
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ConfigError(f"input_ids must be (batch, length) with length >= 1, got {tuple(input_ids.shape)}")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        device = next(model.parameters()).device
        self.ids = input_ids.to(device)
        mask = torch.ones_like(self.ids) if attention_mask is None else attention_mask.to(device).long()
        if mask.shape != self.ids.shape:
            raise ConfigError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(self.ids.shape)}")
        if bool((mask[:, :-1] > mask[:, 1:]).any()) or bool((mask[:, -1] == 0).any()):
            raise ConfigError("prompts must be left-padded (every row's real tokens at the end; tokenizer "
                              "padding_side='left') and non-empty")
        self.mask = mask
        self.prompt_length = self.ids.shape[1]
        self.max_new_tokens = max_new_tokens
        self.eos = _eos_ids(model, eos_token_id, device)
        self.pad = _pad_id(model, pad_token_id, self.eos)
        self.finished = torch.zeros(self.ids.shape[0], dtype=torch.bool, device=device)
        self.num_new = torch.zeros(self.ids.shape[0], dtype=torch.long, device=device)

    @property
    def steps(self) -> int:
        return self.ids.shape[1] - self.prompt_length

    def append(self, tokens: Tensor) -> bool:
        """Add one token per row (pad for finished rows); True when generation should stop."""
        tokens = torch.where(self.finished, torch.full_like(tokens, self.pad), tokens)
        self.num_new += (~self.finished).long()
        self.ids = torch.cat([self.ids, tokens[:, None]], 1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], 1)
        if self.eos.numel():
            self.finished |= torch.isin(tokens, self.eos)
        return bool(self.finished.all()) or self.steps >= self.max_new_tokens

    def output(self) -> GenerationOutput:
        return GenerationOutput(self.ids, self.prompt_length, self.num_new, self.finished)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _choose(scores: Tensor, *, do_sample: bool, generator: torch.Generator | None, temperature: float,
            top_k: int | None, top_p: float | None, typical_p: float | None) -> Tensor:
    """The next token of each row: argmax of ``scores``, or a draw from them after the sampling warpers."""
    if not do_sample:
        return scores.argmax(-1)
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 when sampling, got {temperature}")
    return draw(warp(scores, temperature=temperature, top_k=top_k, top_p=top_p, typical_p=typical_p), generator)


def _final_norm(model: nn.Module) -> nn.Module:
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    for name in ("norm", "ln_f", "final_layer_norm", "final_layernorm"):
        mod = getattr(base, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise ConfigError(f"cannot find the final norm of {type(model).__name__} for early-exit logits")


def early_exit_logits(model: nn.Module, hidden: Tensor) -> Tensor:
    """Logits of an intermediate layer's hidden states ``(..., d)``: the final norm then the LM head (and the
    model's final logit soft-capping, if any), as DoLa reads premature layers (Chuang et al., 2024)."""
    return _head(model, _final_norm(model)(hidden))


def _check_layers(model: nn.Module, layers: Sequence[int], what: str) -> int:
    n = model.config.get_text_config().num_hidden_layers
    bad = [j for j in layers if not 0 <= j < n]
    if bad:
        raise ConfigError(f"{what}: layer(s) {bad} outside [0, {n}) (0 = the embeddings, {n} = the final layer)")
    return n


# ------------------------------------------------------------------------------------------------------ decoders

@torch.no_grad()
def greedy_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                  max_new_tokens: int = 32, repetition_penalty: float = 1.0, eos_token_id: EosIds = None,
                  pad_token_id: int | None = None) -> GenerationOutput:
    """The most likely token at every step (optionally with CTRL's repetition penalty)."""
    return sample(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
                  repetition_penalty=repetition_penalty, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


@torch.no_grad()
def sample(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 32,
           do_sample: bool = True, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           typical_p: float | None = None, repetition_penalty: float = 1.0, eos_token_id: EosIds = None,
           pad_token_id: int | None = None, seed: int | None = None) -> GenerationOutput:
    """Ancestral sampling with temperature and the truncations of top-k (Fan et al., 2018), nucleus / top-p
    (Holtzman et al., 2020, "The Curious Case of Neural Text Degeneration") and locally typical sampling
    (Meister et al., 2023), applied in that order as ``generate()`` does; ``do_sample=False`` is greedy.

    ``seed`` seeds a private ``torch.Generator`` (one uniform draw per row and step); ``None`` uses torch's
    global generator.
    """
    b = _Batch(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
               pad_token_id=pad_token_id)
    gen = _generator(seed, b.ids.device)
    cache = _new_cache(model)
    out = _forward(model, b.ids, b.mask, cache)
    while True:
        scores = apply_repetition_penalty(out.logits[:, -1].float(), b.ids, b.mask, repetition_penalty)
        token = _choose(scores, do_sample=do_sample, generator=gen, temperature=temperature, top_k=top_k,
                        top_p=top_p, typical_p=typical_p)
        if b.append(token):
            return b.output()
        out = _forward(model, b.ids[:, -1:], b.mask, out.cache)


@torch.no_grad()
def contrastive_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                       penalty_alpha: float = 0.6, top_k: int = 4, max_new_tokens: int = 32,
                       repetition_penalty: float = 1.0, eos_token_id: EosIds = None,
                       pad_token_id: int | None = None) -> GenerationOutput:
    """Contrastive search (Su et al., 2022, "A Contrastive Framework for Neural Text Generation"; Su & Collier,
    2023, "Contrastive Search Is What You Need For Neural Text Generation").

    Among the ``top_k`` most likely tokens pick ``argmax (1 - penalty_alpha) p(v) - penalty_alpha * max_j
    cos(h_v, h_j)``: model confidence minus the degeneration penalty, the largest cosine similarity between the
    candidate's last-layer hidden state ``h_v`` and those of every context token ``h_j`` (prompt and generated,
    padding excluded). The ``top_k`` candidates of all rows run in one forward pass: as ``top_k`` positions of each
    row that see the context and not each other (a tree attention mask, no copy of the cache), or, where the cache
    cannot take that (a sliding-window layer about to drop tokens), over a ``B * top_k`` copy of the cache. The
    cache then keeps the chosen candidate's entry. ``penalty_alpha=0`` is greedy search.
    """
    if not 0 <= penalty_alpha <= 1:
        raise ConfigError(f"penalty_alpha must be in [0, 1], got {penalty_alpha}")
    if top_k < 1:
        raise ConfigError(f"contrastive search needs top_k >= 1, got {top_k}")
    b = _Batch(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
               pad_token_id=pad_token_id)
    rows = torch.arange(b.ids.shape[0], device=b.ids.device)
    cache = _new_cache(model)
    out = _forward(model, b.ids, b.mask, cache, hidden=True)
    context = F.normalize(out.hidden_states[-1].float(), dim=-1)  # (B, T, d)
    context_mask = b.mask.bool()
    logits = out.logits[:, -1].float()
    k = min(top_k, logits.shape[-1])
    while True:
        probs = apply_repetition_penalty(logits, b.ids, b.mask, repetition_penalty).softmax(-1)
        top_probs, top_ids = probs.topk(k, dim=-1)  # (B, k)
        step = _candidates_tree if _tree_fits(cache, k) else _candidates_copied
        states, keep = step(model, cache, b.mask, top_ids)  # (B, k, d): the last layer's (normed) states
        h = F.normalize(states.float(), dim=-1)
        sim = torch.einsum("bkd,btd->bkt", h, context).masked_fill(~context_mask[:, None, :], NEG_INF)
        score = (1 - penalty_alpha) * top_probs - penalty_alpha * sim.max(-1).values
        best = score.argmax(-1)  # (B,)
        keep(best)
        logits = _head(model, states[rows, best])  # the LM head on the chosen candidates only
        context = torch.cat([context, h[rows, best][:, None]], 1)
        context_mask = torch.cat([context_mask, torch.ones_like(context_mask[:, :1])], 1)
        if b.append(top_ids[rows, best]):
            return b.output()


def _tree_fits(cache: Any, k: int) -> bool:
    """Whether every cache layer can hold ``k`` tree-masked candidates (no sliding window drops a token)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    for layer in cache.layers:
        if type(layer) is DynamicSlidingWindowLayer:
            if layer.get_seq_length() + k > layer.sliding_window - 1:
                return False
        elif type(layer) is not DynamicLayer:
            return False
    return True


def _head(model: nn.Module, states: Tensor) -> Tensor:
    """Next-token logits of last-layer states (already through the final norm), soft-capped where the model is."""
    logits = model.get_output_embeddings()(states)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return (torch.tanh(logits / cap) * cap if cap else logits).float()


def _candidates_tree(model: nn.Module, cache: Any, mask: Tensor, top_ids: Tensor) -> tuple[Tensor, Any]:
    """Each row's ``k`` candidates as ``k`` positions at the same place, each seeing the context and itself."""
    n, length = mask.shape
    k = top_ids.shape[1]
    sees = torch.cat([mask.bool()[:, None, None, :].expand(n, 1, k, length),
                      torch.eye(k, dtype=torch.bool, device=mask.device).expand(n, 1, k, k)], -1)
    dtype = next(model.parameters()).dtype
    bias = torch.zeros(sees.shape, dtype=dtype, device=mask.device).masked_fill(~sees, torch.finfo(dtype).min)
    position = mask.long().sum(-1, keepdim=True).expand(n, k)  # the next position of each row
    out = model.get_decoder()(input_ids=top_ids, attention_mask=bias, position_ids=position, cache=cache,
                              use_cache=True)

    def keep(best: Tensor) -> None:
        rows = torch.arange(n, device=best.device)
        for layer in cache.layers:  # the chosen candidate's entry moves to the first candidate slot
            for states in (layer.keys, layer.values):
                states[:, :, length] = states[rows, :, length + best]
        cache.crop(-(k - 1))

    return out.last_hidden_state, keep


def _candidates_copied(model: nn.Module, cache: Any, mask: Tensor, top_ids: Tensor) -> tuple[Tensor, Any]:
    """Each row's ``k`` candidates as ``k`` rows of a ``k``-fold copy of the cache (one token each)."""
    n, k = top_ids.shape
    cache.batch_repeat_interleave(k)
    mask_k = torch.cat([mask, torch.ones_like(mask[:, :1])], 1).repeat_interleave(k, 0)
    out = model.get_decoder()(input_ids=top_ids.reshape(-1, 1), attention_mask=mask_k,
                              position_ids=_positions(mask_k)[:, -1:], cache=cache, use_cache=True)

    def keep(best: Tensor) -> None:
        cache.batch_select_indices(torch.arange(n, device=best.device) * k + best)

    return out.last_hidden_state[:, -1].view(n, k, -1), keep


@torch.no_grad()
def contrastive_decoding(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                         amateur: nn.Module | None = None, amateur_layer: int | None = None, alpha: float = 0.1,
                         beta: float = 0.5, amateur_temperature: float = 1.0, max_new_tokens: int = 32,
                         do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, typical_p: float | None = None,
                         repetition_penalty: float = 1.0, eos_token_id: EosIds = None,
                         pad_token_id: int | None = None, seed: int | None = None) -> GenerationOutput:
    """Contrastive decoding (Li et al., 2023, "Contrastive Decoding: Open-ended Text Generation as Optimization";
    in the form of O'Brien & Lewis, 2023, "Contrastive Decoding Improves Reasoning in Large Language Models").

    Score ``(1 + beta) log p_exp(v) - beta log p_ama(v)`` over the plausible tokens ``p_exp(v) >= alpha * max
    p_exp`` (the others get ``-inf``), then the argmax (or a draw with ``do_sample``). The amateur is ``amateur``
    (a smaller causal LM with the same vocabulary, with its own KV cache) or the expert's own layer
    ``amateur_layer`` read through the final norm and LM head (early exit); its log-probabilities are taken at
    ``amateur_temperature`` (Li et al.'s tau). Li et al.'s plain difference ``log p_exp - log p_ama`` ranks
    tokens as ``beta`` going to infinity does; ``beta=0`` (a zero-weight amateur) is greedy search.
    """
    if (amateur is None) == (amateur_layer is None):
        raise ConfigError("contrastive decoding needs exactly one amateur: a model (amateur=) or one of the "
                          "expert's layers (amateur_layer=)")
    if not 0 < alpha <= 1:
        raise ConfigError(f"alpha (plausibility) must be in (0, 1], got {alpha}")
    if beta < 0 or amateur_temperature <= 0:
        raise ConfigError(f"beta must be >= 0 and amateur_temperature > 0, got {beta} and {amateur_temperature}")
    if amateur_layer is not None:
        _check_layers(model, [amateur_layer], "amateur_layer")
    b = _Batch(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
               pad_token_id=pad_token_id)
    gen = _generator(seed, b.ids.device)
    early = amateur_layer is not None
    out = _forward(model, b.ids, b.mask, _new_cache(model), hidden=early)
    ama = None if early else _forward(amateur, b.ids, b.mask, _new_cache(amateur))
    while True:
        expert_logp = out.logits[:, -1].float().log_softmax(-1)
        ama_logits = early_exit_logits(model, out.hidden_states[amateur_layer][:, -1]) if early \
            else ama.logits[:, -1].float()
        if ama_logits.shape[-1] != expert_logp.shape[-1]:
            raise ConfigError(f"the amateur's vocabulary ({ama_logits.shape[-1]}) differs from the expert's "
                              f"({expert_logp.shape[-1]}); contrastive decoding needs the same tokenizer")
        ama_logp = (ama_logits / amateur_temperature).log_softmax(-1)
        scores = ((1 + beta) * expert_logp - beta * ama_logp).masked_fill(
            ~plausibility_mask(expert_logp, alpha), NEG_INF)
        scores = apply_repetition_penalty(scores, b.ids, b.mask, repetition_penalty)
        token = _choose(scores, do_sample=do_sample, generator=gen, temperature=temperature, top_k=top_k,
                        top_p=top_p, typical_p=typical_p)
        if b.append(token):
            return b.output()
        out = _forward(model, b.ids[:, -1:], b.mask, out.cache, hidden=early)
        if not early:
            ama = _forward(amateur, b.ids[:, -1:], b.mask, ama.cache)


@torch.no_grad()
def contrastive_input_decoding(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                               contrastive_input_ids: Tensor, contrastive_attention_mask: Tensor | None = None,
                               contrast_lambda: float = 1.0, max_new_tokens: int = 32, do_sample: bool = False,
                               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                               typical_p: float | None = None, repetition_penalty: float = 1.0,
                               eos_token_id: EosIds = None, pad_token_id: int | None = None,
                               seed: int | None = None) -> GenerationOutput:
    """Contrastive input decoding, CID (Yona et al., 2023, "Surfacing Biases in Large Language Models using
    Contrastive Input Decoding"): continue each row of ``input_ids`` (the regular input ``x``) with text that is
    likely given ``x`` but unlikely given its row of ``contrastive_input_ids`` (``x'``, the same input with one
    attribute changed, e.g. "men" -> "women"); both continue with the same tokens.

    Scores ``log p(v | x, y) - contrast_lambda * max(0, log p(v | x', y) - log p(v | x, y))``: a token keeps
    its likelihood under ``x`` unless ``x'`` makes it likelier, and then loses ``contrast_lambda`` times that
    log-ratio (``lambda`` grows the contrast, as in the paper; ``0`` is greedy search on ``x``, and so is an
    ``x'`` equal to ``x``). Then CTRL's repetition penalty over the regular row and the argmax (or a draw with
    ``do_sample``). NOTE: this scoring rule is written from the paper's description (the two next-token
    distributions contrasted with a weight lambda); its exact equation could not be checked offline.

    The regular and contrastive rows run as one ``2B``-row batch (both left-padded to the longer of the two)
    with one KV cache; the output holds the regular rows only.
    """
    if contrast_lambda < 0:
        raise ConfigError(f"contrast_lambda must be >= 0, got {contrast_lambda}")
    if contrastive_input_ids.dim() != 2 or contrastive_input_ids.shape[0] != input_ids.shape[0]:
        raise ConfigError(f"contrastive_input_ids must be (batch, length) with one row per input row: got "
                          f"{tuple(contrastive_input_ids.shape)} for input_ids {tuple(input_ids.shape)}")
    rows, t1, t2 = input_ids.shape[0], input_ids.shape[1], contrastive_input_ids.shape[1]
    width = max(t1, t2)

    def left_pad(ids: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        mask = torch.ones_like(ids) if mask is None else mask.to(ids.device).long()
        if mask.shape != ids.shape:
            raise ConfigError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
        extra = width - ids.shape[1]
        return F.pad(ids, (extra, 0), value=0), F.pad(mask, (extra, 0), value=0)

    ids_x, mask_x = left_pad(input_ids, attention_mask)
    ids_c, mask_c = left_pad(contrastive_input_ids.to(input_ids.device), contrastive_attention_mask)
    b = _Batch(model, torch.cat([ids_x, ids_c]), torch.cat([mask_x, mask_c]), max_new_tokens=max_new_tokens,
               eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    gen = _generator(seed, b.ids.device)
    out = _forward(model, b.ids, b.mask, _new_cache(model))
    while True:
        logp = out.logits[:, -1].float().log_softmax(-1)
        regular, contrast = logp[:rows], logp[rows:]
        scores = regular - contrast_lambda * (contrast - regular).clamp(min=0)
        scores = apply_repetition_penalty(scores, b.ids[:rows], b.mask[:rows], repetition_penalty)
        token = _choose(scores, do_sample=do_sample, generator=gen, temperature=temperature, top_k=top_k,
                        top_p=top_p, typical_p=typical_p)
        if b.append(torch.cat([token, token])):
            break
        out = _forward(model, b.ids[:, -1:], b.mask, out.cache)
    return GenerationOutput(b.ids[:rows, width - t1:], t1, b.num_new[:rows], b.finished[:rows])


def dola_candidate_layers(model: nn.Module, dola_layers: str | Sequence[int]) -> list[int]:
    """The premature-layer bucket: ``"low"`` (the lower half of the layers, every second one) or ``"high"`` (the
    upper half), as transformers' DoLa chose them (at most 20 layers; the embedding layer skipped when the
    embeddings are tied to the LM head, where its early exit is close to the identity), or explicit indices
    (0 = the embeddings, ``i`` = the output of block ``i``)."""
    cfg = model.config.get_text_config()
    n = cfg.num_hidden_layers
    if not isinstance(dola_layers, str):
        layers = sorted({int(j) for j in dola_layers})
        _check_layers(model, layers, "dola_layers")
    elif dola_layers == "low":
        start = 2 if getattr(cfg, "tie_word_embeddings", getattr(model.config, "tie_word_embeddings", False)) else 0
        layers = [start] if start == n // 2 else list(range(start, n // 2 if n <= 40 else 20, 2))
    elif dola_layers == "high":
        layers = list(range(n // 2, n, 2)) if n <= 40 else list(range(n - 20, n, 2))
    else:
        raise ConfigError(f"dola_layers must be 'low', 'high' or a list of layer indices, got {dola_layers!r}")
    layers = [j for j in layers if j < n]
    if not layers:
        raise ConfigError(f"dola_layers={dola_layers!r} selects no premature layer in a {n}-layer model; "
                          "give the layers as a list")
    return layers


@torch.no_grad()
def dola(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
         dola_layers: str | Sequence[int] = "low", alpha: float = 0.1, repetition_penalty: float = 1.2,
         max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None, typical_p: float | None = None, eos_token_id: EosIds = None,
         pad_token_id: int | None = None, seed: int | None = None) -> GenerationOutput:
    """DoLa: decoding by contrasting layers (Chuang et al., 2024, "DoLa: Decoding by Contrasting Layers Improves
    Factuality in Large Language Models", ICLR).

    At every step and for every row, the premature layer ``M`` is the candidate of ``dola_layers`` (see
    :func:`dola_candidate_layers`) whose early-exit distribution has the largest Jensen-Shannon divergence from
    the final layer's; the scores are ``log q_N(v) - log q_M(v)`` over the plausible tokens ``q_N(v) >= alpha *
    max q_N`` (``-inf`` elsewhere), then CTRL's repetition penalty, which the paper applies with
    ``repetition_penalty=1.2`` (its default here), then the argmax (or a draw with ``do_sample``).
    """
    if not 0 < alpha <= 1:
        raise ConfigError(f"alpha (plausibility) must be in (0, 1], got {alpha}")
    layers = dola_candidate_layers(model, dola_layers)
    b = _Batch(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
               pad_token_id=pad_token_id)
    gen = _generator(seed, b.ids.device)
    rows = torch.arange(b.ids.shape[0], device=b.ids.device)
    out = _forward(model, b.ids, b.mask, _new_cache(model), hidden=True)
    while True:
        mature = out.logits[:, -1].float().log_softmax(-1)  # (B, V)
        premature = torch.stack([early_exit_logits(model, out.hidden_states[j][:, -1]) for j in layers]
                                ).log_softmax(-1)  # (J, B, V)
        p_mature, p_premature = mature.exp(), premature.exp()
        log_mid = (0.5 * (p_mature + p_premature)).log()
        jsd = 0.5 * torch.where(p_mature > 0, p_mature * (mature - log_mid), 0.0).sum(-1) \
            + 0.5 * torch.where(p_premature > 0, p_premature * (premature - log_mid), 0.0).sum(-1)  # (J, B)
        chosen = premature[jsd.argmax(0), rows]  # (B, V)
        scores = (mature - chosen).masked_fill(~plausibility_mask(mature, alpha), NEG_INF)
        scores = apply_repetition_penalty(scores, b.ids, b.mask, repetition_penalty)
        token = _choose(scores, do_sample=do_sample, generator=gen, temperature=temperature, top_k=top_k,
                        top_p=top_p, typical_p=typical_p)
        if b.append(token):
            return b.output()
        out = _forward(model, b.ids[:, -1:], b.mask, out.cache, hidden=True)
