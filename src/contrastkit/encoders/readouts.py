"""Training-free readouts of decoder LMs: text -> prompt(s) -> which layer and token -> one vector.

Each readout is a pooling-like component the :class:`~contrastkit.encoders.Encoder` runs in place of a
pooler (``model.pooling: <name>``, parameters under ``model.readout``). They follow the reference
implementations: the sentence is fixed up as they do it (a final '.' added unless it ends in
``. ? " '``, double quotes turned into single quotes, a final '?' turned into '.'), batches are
left-padded and the state of the last real token is read from ``hidden_states[layer]`` (``-1`` = the
last layer after the final norm, ``-2`` = the output of the second-to-last block). A text too long for
``max_length`` is shortened, never the template around it.

| name | what | paper / reference code |
|---|---|---|
| ``prompt`` | PromptEOL ``This sentence : "{text}" means in one word:"``, last layer, last token | Jiang et al. 2023, "Scaling Sentence Embeddings with Large Language Models" (kongds/scaling_sentemb) |
| ``prompt_icl`` | PromptEOL after in-context demonstrations ``This sentence : "<s>" means in one word:"<w>".`` | same paper (run_icl.sh format) |
| ``metaeol`` | the 8 meta-task prompts, last tokens averaged (optionally over several layers too) | Lei et al. 2024, "Meta-Task Prompting Elicits Embeddings from Large Language Models" |
| ``pretended_cot`` | ``After thinking step by step , this sentence : ...``, second-to-last layer | Zhang et al. 2024, "Simple Techniques for Enhancing Sentence Embeddings in Generative Language Models" |
| ``knowledge`` | Knowledge Enhancement prefix, second-to-last layer | same paper |
| ``contrastive_prompt`` | the auxiliary prompt's attention-head activation (input of ``o_proj``) at ``act_layer`` subtracted from the main prompt's at its last token | Cheng et al. 2025, "Contrastive Prompting Enhances Sentence Embeddings in LLMs through Inference-Time Steering" |
| ``token_prepending`` | a placeholder token before the sentence takes, in layers [start, exit), the previous layer's last-token state | Fu et al. 2025, "Token Prepending: A Training-Free Approach for Eliciting Better Sentence Embeddings from LLMs" |
| ``echo`` | the text twice; mean or last token over the second copy only | Springer et al. 2024, "Repetition Improves Language Model Embeddings" |
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .pooling import last_token_index

PROMPTEOL = 'This sentence : "{text}" means in one word:"'
PRETENDED_COT = 'After thinking step by step , this sentence : "{text}" means in one word:"'
KNOWLEDGE = ("The essence of a sentence is often captured by its main subjects and actions, while descriptive terms "
             'provide additional but less central details. With this in mind , this sentence : "{text}" means in one '
             'word:"')
METAEOL = (
    "In this task, you're presented with a text excerpt. Your task is to categorize the excerpt into a broad category "
    "such as 'Education', 'Technology', 'Health', 'Business', 'Environment', 'Politics', or 'Culture'. These "
    "categories help in organizing content for better accessibility and targeting. For this task, this sentence : "
    '"{text}" should be classified under one general category in one word:"',
    "In this task, you're given a statement and you need to determine whether it's presenting an 'Opinion' or a "
    "'Fact'. This distinction is vital for information verification, educational purposes, and content analysis. For "
    'this task, this sentence : "{text}" discriminates between opinion and fact in one word:"',
    "In this task, you're given a review from an online platform. Your task is to generate a rating for the product "
    "based on the review on a scale of 1-5, where 1 means 'extremely negative' and 5 means 'extremely positive'. For "
    'this task, this sentence : "{text}" reflects the sentiment in one word:"',
    "In this task, you're reading a personal diary entry. Your task is to identify the predominant emotion expressed, "
    'such as joy, sadness, anger, fear, or love. For this task, this sentence : "{text}" conveys the emotion in one '
    'word:"',
    "In this task, you're presented with two sentences. Your task is to assess whether the sentences convey the same "
    "meaning. Use 'identical', 'similar', 'different', or 'unrelated' to describe the relationship. To enhance the "
    'performance of this task, this sentence : "{text}" means in one word:"',
    "In this task, you're given a sentence and a phrase. Your task is to determine if the phrase can be a contextual "
    "synonym within the given sentence. Options include 'yes', 'no', or 'partially'. To enhance the performance of "
    'this task, this sentence : "{text}" means in one word:"',
    "In this task, you're examining a news article. Your task is to extract the most critical fact from the article. "
    'For this task, this sentence : "{text}" encapsulates the key fact in one word:"',
    "In this task, you're reviewing a scientific abstract. Your task is to identify the main entities (e.g., "
    "proteins, diseases) and their relations (e.g., causes, treats). For this task, this sentence : \"{text}\" "
    'highlights the primary entity or relation in one word:"',
)
CONTRASTIVE_AUX = 'The irrelevant information of this sentence : "{text}" means in one word:"'
TOKEN_PREPENDING = 'This sentence : <PST> "{text}" means in one word:"'
ECHO = "Rewrite the sentence: {text}, rewritten sentence: {text}"
# At inference, a template's token prefix shared by a batch's rows runs once (Readout._last_tokens_shared_prefix);
# False runs every prompt whole, as the reference implementations do (benchmarks/readout_prefix_sharing.py).
SHARE_PREFIXES = True
# Prompt rows sharing fewer leading tokens than this run whole (a separate prefix pass would not pay).
MIN_SHARED_PREFIX = 4
# The paper's OPT-350M demonstration; the sentence is from STS-B *train* (checked absent from every STS test set).
DEMONSTRATIONS = (("A man is playing on a guitar and singing.", "Music"),)


def eol_text(s: str) -> str:
    """The reference implementations' sentence fix-up before it goes between the template's quotes."""
    if s and s[-1] not in ".?\"'":
        s += "."
    s = s.replace('"', "'")
    if s and s[-1] == "?":
        s = s[:-1] + "."
    return s


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer adds before and after a text (e.g. BOS), found by probing it."""
    with_ = list(tokenizer("a sentence")["input_ids"])
    without = list(tokenizer("a sentence", add_special_tokens=False)["input_ids"])
    for i in range(len(with_) - len(without) + 1):
        if with_[i:i + len(without)] == without:
            return with_[:i], with_[i + len(without):]
    return [], []


def _fit(tokenizer: Any, text: str, build: Callable[[str], list[int]], max_length: int | None) -> str:
    """``text``, shortened (by tokens, from the end) until ``build(text)`` fits in ``max_length`` tokens."""
    if max_length is None:
        return text
    for _ in range(4):
        over = len(build(text)) - max_length
        if over <= 0:
            return text
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= 1:
            break
        text = tokenizer.decode(ids[:max(1, len(ids) - over)])
    if len(build(text)) > max_length:
        raise ConfigError(f"the readout's template alone is longer than max_length={max_length} tokens; "
                          "raise model.max_length")
    return text


def _pad(rows: Sequence[Sequence[int]], pad_id: int, side: str, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """(ids, mask) of token rows padded to the longest on ``side``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.tensor(list(r), dtype=torch.long)
        mask[i, sl] = 1
    return ids.to(device), mask.to(device)


def _blocks(backbone: nn.Module) -> nn.ModuleList:
    from .backbones import layer_list

    return layer_list(backbone)


def _num_layers(backbone: nn.Module) -> int:
    return int(backbone.config.num_hidden_layers)


class Readout:
    """Base: a text becomes one or more prompts; ``forward`` turns the tokenized batch into one vector per text."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    padding_side: ClassVar[str] = "left"

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown readout parameter(s) {', '.join(unknown)} for pooling '{self.name}' "
                              f"(accepts: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.check()

    # -- parameters ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the parameters (types, placeholders) without a model."""

    def _template(self, key: str = "template") -> str:
        t = self.params[key]
        if not isinstance(t, str) or "{text}" not in t:
            raise ConfigError(f"readout parameter '{key}' of '{self.name}' must be a string containing '{{text}}'")
        return t

    def _int(self, key: str) -> int:
        v = self.params[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"readout parameter '{key}' of '{self.name}' must be an integer, got {v!r}")
        return v

    def _layers(self, key: str) -> list[int]:
        v = self.params[key]
        v = [v] if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(v, (list, tuple)) or not v or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
            raise ConfigError(f"readout parameter '{key}' of '{self.name}' must be a layer index or a non-empty list "
                              f"of them, got {self.params[key]!r}")
        return list(v)

    def attach(self, backbone: nn.Module, tokenizer: Any) -> None:
        """Check the parameters against the model (layer ranges) and prepare the tokenizer."""
        n = _num_layers(backbone)
        for layer in self.read_layers():
            if not -(n + 1) <= layer <= n:
                raise ConfigError(f"readout '{self.name}': layer {layer} is out of range for a backbone with {n} "
                                  f"layers (hidden_states has {n + 1} entries: -{n + 1}..{n})")
        tokenizer.padding_side = self.padding_side
        self._affixes = special_affixes(tokenizer)

    def read_layers(self) -> list[int]:
        """The hidden_states indices the vector is read from."""
        return self._layers("layer")

    # -- text -> tokens ----------------------------------------------------------------------------
    def prompts(self, text: str) -> list[str]:
        """The prompt strings of one text (several for multi-prompt readouts)."""
        raise NotImplementedError

    def featurize(self, tokenizer: Any, text: str, max_length: int | None) -> dict[str, list[list[int]]]:
        """Token ids of one text's prompts (``rows``), text shortened to fit ``max_length``."""
        def build_all(t: str) -> list[list[int]]:
            return [list(tokenizer(p)["input_ids"]) for p in self.prompts(t)]

        text = _fit(tokenizer, text, lambda t: max(build_all(t), key=len), max_length)
        return {"rows": build_all(text)}

    def collate(self, tokenizer: Any, items: Sequence[dict[str, list[list[int]]]],
                device: torch.device | str) -> dict[str, Tensor]:
        """Pad a batch of featurized texts into tensors (rows of each text kept together, text-major)."""
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids, mask = _pad([r for it in items for r in it["rows"]], pad_id, self.padding_side, device)
        return {"input_ids": ids, "attention_mask": mask}

    def length(self, item: dict[str, list[list[int]]]) -> int:
        """Sorting key for length-bucketed batches."""
        return max(len(r) for r in item["rows"])

    # -- tokens -> vector --------------------------------------------------------------------------
    def _read(self, backbone: nn.Module, feats: dict[str, Tensor], index: Tensor | None = None,
              **forward_kwargs: Any) -> list[Tensor]:
        """``hidden_states[layer]`` for each read layer (as ``output_hidden_states`` numbers them), kept only at
        position ``index`` of each row when given: hooks on the blocks instead of every layer's full states.
        ``forward_kwargs`` go to the backbone's forward (a key/value cache and the positions after it)."""
        n = _num_layers(backbone)
        wanted = {layer % (n + 1) for layer in self.read_layers()}
        mask = feats["attention_mask"]
        rows = torch.arange(mask.shape[0], device=mask.device)
        got: dict[int, Tensor] = {}

        def take(h: Tensor) -> Tensor:
            return h[rows, index] if index is not None else h

        def keep(i: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, out: Any) -> None:
                got[i] = take(out[0] if isinstance(out, tuple) else out)
            return hook

        blocks = _blocks(backbone)
        handles = [(backbone.get_input_embeddings() if i == 0 else blocks[i - 1]).register_forward_hook(keep(i))
                   for i in sorted(wanted) if i < n]
        try:
            out = backbone(input_ids=feats["input_ids"], attention_mask=mask, return_dict=True, **forward_kwargs)
        finally:
            for h in handles:
                h.remove()
        if n in wanted:
            got[n] = take(out.last_hidden_state)  # hidden_states[-1]: after the final norm
        return [got[layer % (n + 1)] for layer in self.read_layers()]

    def _last_tokens(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor:
        """The last real token's state, averaged over the read layers."""
        return torch.stack(self._read(backbone, feats, last_token_index(feats["attention_mask"]))).mean(0)

    def _last_tokens_shared_prefix(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor | None:
        """``_last_tokens`` with the token prefix that one template's rows share (instruction, demonstrations,
        the text before ``{text}``) run once per batch, its keys and values reused by every row; None when the
        prefix is too short to be worth it. The suffix continues the prefix's positions, so under rotary
        position embeddings the rows see the same relative positions as left-padded full prompts: the same
        vectors up to rounding, for a fraction of the compute (MetaEOL's instructions are ~3/4 of each prompt)."""
        from ..lm.bidirectional import attends_causally

        if not attends_causally(backbone):  # a prefix's states depend on the suffix: no sharing
            return None
        ids, mask = feats["input_ids"], feats["attention_mask"]
        rows = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
        k = len(self.prompts("x"))  # rows are text-major: row i is prompt i % k of its text
        groups = [list(range(g, len(rows), k)) for g in range(k)]
        prefixes = []
        for group in groups:
            shared = os.path.commonprefix([rows[i] for i in group])[:min(len(rows[i]) for i in group) - 1]
            if len(shared) < MIN_SHARED_PREFIX:
                return None
            prefixes.append(shared)
        # transformers 5.2x renamed past_key_values to cache (the old name warns); older releases know only it
        base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone  # under PEFT
        key = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        out: list[Tensor | None] = [None] * len(rows)
        for group, prefix in zip(groups, prefixes):
            cache = getattr(backbone(input_ids=torch.tensor([prefix], device=ids.device), use_cache=True,
                                     return_dict=True), key)
            cache.batch_repeat_interleave(len(group))
            suffix, suffix_mask = _pad([rows[i][len(prefix):] for i in group], 0, "right", ids.device)
            full_mask = torch.cat([suffix_mask.new_ones(len(group), len(prefix)), suffix_mask], dim=1)
            positions = torch.arange(len(prefix), len(prefix) + suffix.shape[1], device=ids.device)
            states = self._read(backbone, {"input_ids": suffix, "attention_mask": full_mask},
                                suffix_mask.sum(1) - 1, **{key: cache}, use_cache=True,
                                position_ids=positions.expand(len(group), -1))
            for i, vec in zip(group, torch.stack(states).mean(0)):
                out[i] = vec
        return torch.stack(out)  # type: ignore[arg-type]

    def forward(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor:
        """One vector per text: the last token's state, averaged over the read layers and the text's prompts
        (at inference, shared prompt prefixes are computed once per batch)."""
        shared = SHARE_PREFIXES and not torch.is_grad_enabled()
        vec = self._last_tokens_shared_prefix(backbone, feats) if shared else None
        if vec is None:
            vec = self._last_tokens(backbone, feats)
        k = len(self.prompts("x"))
        return vec.view(-1, k, vec.shape[-1]).mean(1)

    # -- sentence-transformers -----------------------------------------------------------------------
    def st_chat_template(self, tokenizer: Any) -> str | None:
        """A chat template through which ``SentenceTransformer(path)`` builds the same token ids, or None."""
        return None


class PromptEOL(Readout):
    """PromptEOL: ``template`` around the fixed-up text, last token of ``hidden_states[layer]``.

    Parameters: ``template`` (with ``{text}``), ``layer`` (-1; a list averages several layers).
    Jiang et al. 2023, "Scaling Sentence Embeddings with Large Language Models".
    """

    name = "prompt"
    defaults = {"template": PROMPTEOL, "layer": -1}

    def check(self) -> None:
        self._template()
        self.read_layers()

    def prefix(self) -> str:
        """Text before the prompt proper (in-context demonstrations)."""
        return ""

    def prompts(self, text: str) -> list[str]:
        return [self.prefix() + self.params["template"].replace("{text}", eol_text(text))]

    def st_chat_template(self, tokenizer: Any) -> str | None:
        if self.read_layers() != [-1]:
            return None  # sentence-transformers reads the last layer only
        before, after = (tokenizer.convert_ids_to_tokens(ids) for ids in self._affixes)
        head, tail = self.params["template"].split("{text}", 1)
        if "{text}" in tail:
            return None

        def lit(s: str) -> str:
            return "{{ " + repr(s) + " }}"

        # the same fix-up as eol_text, in Jinja; content may be a string or [{"type": "text", "text": ...}]
        return ("{%- set c = messages[-1]['content'] -%}"
                "{%- if c is not string -%}{%- set c = c[0]['text'] -%}{%- endif -%}"
                "{%- if c and c[-1] not in '.?\"\\'' -%}{%- set c = c ~ '.' -%}{%- endif -%}"
                "{%- set c = c.replace('\"', \"'\") -%}"
                "{%- if c and c[-1] == '?' -%}{%- set c = c[:-1] ~ '.' -%}{%- endif -%}"
                + lit("".join(before) + self.prefix() + head) + "{{ c }}" + lit(tail + "".join(after)))


class PromptICL(PromptEOL):
    """PromptEOL after in-context demonstrations, in the paper's format:
    ``This sentence : "<sentence>" means in one word:"<word>".This sentence : "{text}" means in one word:"``.

    Parameters: ``template``, ``demonstrations`` (list of [sentence, word]; default: the paper's OPT-350M
    demonstration, a sentence of STS-B train), ``layer`` (-1).
    Jiang et al. 2023, "Scaling Sentence Embeddings with Large Language Models".
    """

    name = "prompt_icl"
    defaults = {"template": PROMPTEOL, "demonstrations": [list(d) for d in DEMONSTRATIONS], "layer": -1}

    def check(self) -> None:
        super().check()
        demos = self.params["demonstrations"]
        if not isinstance(demos, (list, tuple)) or not demos or not all(
                isinstance(d, (list, tuple)) and len(d) == 2 and all(isinstance(x, str) for x in d) for d in demos):
            raise ConfigError("readout parameter 'demonstrations' of 'prompt_icl' must be a non-empty list of "
                              "[sentence, word] pairs")
        self.params["demonstrations"] = [list(d) for d in demos]

    def prefix(self) -> str:
        t = self.params["template"]
        return "".join(t.replace("{text}", eol_text(s)) + w + '".' for s, w in self.params["demonstrations"])


class PretendedCoT(PromptEOL):
    """Pretended Chain of Thought: ``After thinking step by step , this sentence : "{text}" means in one word:"``,
    second-to-last layer. Zhang et al. 2024, "Simple Techniques for Enhancing Sentence Embeddings in Generative
    Language Models"."""

    name = "pretended_cot"
    defaults = {"template": PRETENDED_COT, "layer": -2}


class KnowledgeEnhancement(PromptEOL):
    """Knowledge Enhancement: the prefix on what carries a sentence's meaning, then PromptEOL; second-to-last
    layer. Zhang et al. 2024, "Simple Techniques for Enhancing Sentence Embeddings in Generative Language Models"."""

    name = "knowledge"
    defaults = {"template": KNOWLEDGE, "layer": -2}


class MetaEOL(Readout):
    """MetaEOL: the 8 meta-task prompts, last-token states averaged over prompts and over ``layers``.

    Parameters: ``templates`` (default: the 8 prompts of the paper as its reference code writes them),
    ``layers`` (-1; e.g. [-1, -2, -3] averages the last three, as the paper's layer study).
    Lei et al. 2024, "Meta-Task Prompting Elicits Embeddings from Large Language Models".
    """

    name = "metaeol"
    defaults = {"templates": list(METAEOL), "layers": [-1]}

    def check(self) -> None:
        ts = self.params["templates"]
        if not isinstance(ts, (list, tuple)) or not ts or not all(isinstance(t, str) and "{text}" in t for t in ts):
            raise ConfigError("readout parameter 'templates' of 'metaeol' must be a non-empty list of strings "
                              "containing '{text}'")
        self.params["templates"] = list(ts)
        self.read_layers()

    def read_layers(self) -> list[int]:
        return self._layers("layers")

    def prompts(self, text: str) -> list[str]:
        s = eol_text(text)
        return [t.replace("{text}", s) for t in self.params["templates"]]


class _Stop(Exception):
    """Raised by a hook to end a forward pass early."""


def _o_proj(backbone: nn.Module, layer: int) -> nn.Module:
    block = _blocks(backbone)[layer]
    proj = getattr(getattr(block, "self_attn", None), "o_proj", None)
    if proj is None:
        raise ConfigError(f"contrastive_prompt needs attention blocks with self_attn.o_proj; "
                          f"{type(block).__name__} has none")
    return proj


class ContrastivePrompt(PromptEOL):
    """Contrastive Prompting: at block ``act_layer``, the last token's attention-head output (the input of
    ``o_proj``) of the main prompt, A, is steered away from the auxiliary prompt's, B:
    ``mode='scaled'``: ``coeff * (A - B)``; ``mode='norm'``: ``(A - B) * |A| / |A - B|`` (norm-preserving);
    the vector is then read at ``layer`` (last token).

    Parameters: ``template`` (PromptEOL), ``aux_template`` ("The irrelevant information of this sentence ..."),
    ``act_layer`` (4), ``coeff`` (0.5), ``mode`` ('scaled'), ``layer`` (-1).
    Cheng et al. 2025, "Contrastive Prompting Enhances Sentence Embeddings in LLMs through Inference-Time Steering".
    """

    name = "contrastive_prompt"
    defaults = {"template": PROMPTEOL, "aux_template": CONTRASTIVE_AUX, "act_layer": 4, "coeff": 0.5,
                "mode": "scaled", "layer": -1}

    def check(self) -> None:
        super().check()
        self._template("aux_template")
        self._int("act_layer")
        if isinstance(self.params["coeff"], bool) or not isinstance(self.params["coeff"], (int, float)):
            raise ConfigError("readout parameter 'coeff' of 'contrastive_prompt' must be a number")
        if self.params["mode"] not in ("scaled", "norm"):
            raise ConfigError(f"readout parameter 'mode' of 'contrastive_prompt' must be 'scaled' or 'norm', "
                              f"got {self.params['mode']!r}")

    def attach(self, backbone: nn.Module, tokenizer: Any) -> None:
        super().attach(backbone, tokenizer)
        n = _num_layers(backbone)
        if not 0 <= self.params["act_layer"] < n:
            raise ConfigError(f"readout 'contrastive_prompt': act_layer {self.params['act_layer']} is not a block "
                              f"index of this backbone (0..{n - 1})")
        _o_proj(backbone, self.params["act_layer"])

    def featurize(self, tokenizer: Any, text: str, max_length: int | None) -> dict[str, list[list[int]]]:
        def build(t: str) -> list[int]:
            return max((list(tokenizer(p)["input_ids"]) for p in (self.prompts(t)[0], self.aux_prompt(t))), key=len)

        text = _fit(tokenizer, text, build, max_length)
        return {"rows": [list(tokenizer(self.prompts(text)[0])["input_ids"])],
                "aux": [list(tokenizer(self.aux_prompt(text))["input_ids"])]}

    def aux_prompt(self, text: str) -> str:
        """The auxiliary ("irrelevant information") prompt of a text."""
        return self.params["aux_template"].replace("{text}", eol_text(text))

    def collate(self, tokenizer: Any, items: Sequence[dict[str, list[list[int]]]],
                device: torch.device | str) -> dict[str, Tensor]:
        feats = super().collate(tokenizer, items, device)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        feats["aux_input_ids"], feats["aux_attention_mask"] = _pad(
            [r for it in items for r in it["aux"]], pad_id, self.padding_side, device)
        return feats

    def length(self, item: dict[str, list[list[int]]]) -> int:
        return max(len(item["rows"][0]), len(item["aux"][0]))

    def forward(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor:
        proj = _o_proj(backbone, self.params["act_layer"])
        captured: list[Tensor] = []
        aux_mask = feats["aux_attention_mask"]
        aux_idx = last_token_index(aux_mask)

        def capture(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            captured.append(x[torch.arange(x.shape[0], device=x.device), aux_idx])
            raise _Stop

        handle = proj.register_forward_pre_hook(capture)
        try:
            backbone(input_ids=feats["aux_input_ids"], attention_mask=aux_mask, return_dict=True)
        except _Stop:
            pass
        finally:
            handle.remove()
        b = captured[0]
        idx = last_token_index(feats["attention_mask"])
        coeff, mode = float(self.params["coeff"]), self.params["mode"]

        def steer(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            rows = torch.arange(x.shape[0], device=x.device)
            a = x[rows, idx]
            diff = a - b.to(a.dtype)
            if mode == "scaled":
                new = coeff * diff
            else:
                new = diff * a.norm(dim=-1, keepdim=True) / (diff.norm(dim=-1, keepdim=True) + 1e-7)
            x = x.clone()
            x[rows, idx] = new
            return (x, *args[1:])

        handle = proj.register_forward_pre_hook(steer)
        try:
            return self._last_tokens(backbone, feats)
        finally:
            handle.remove()

    def st_chat_template(self, tokenizer: Any) -> str | None:
        return None


class TokenPrepending(PromptEOL):
    """Token Prepending: a placeholder token before the sentence; in blocks ``start`` <= i < ``exit`` its input
    state is replaced by the input state of the last token (the previous layer's sentence embedding), so earlier
    tokens attend to the whole sentence; read at ``layer``, last token.

    Parameters: ``template`` (PromptEOL with the placeholder), ``placeholder`` ('<PST>', added to the
    vocabulary if missing, its embedding drawn from N(0, 1) with a fixed seed as the reference code draws it),
    ``start`` (1), ``exit`` (7), ``layer`` (-1).
    Fu et al. 2025, "Token Prepending: A Training-Free Approach for Eliciting Better Sentence Embeddings from LLMs".
    """

    name = "token_prepending"
    defaults = {"template": TOKEN_PREPENDING, "placeholder": "<PST>", "start": 1, "exit": 7, "layer": -1}

    def check(self) -> None:
        super().check()
        ph = self.params["placeholder"]
        if not isinstance(ph, str) or not ph or self.params["template"].count(ph) != 1:
            raise ConfigError("readout 'token_prepending': 'placeholder' must be a non-empty string occurring "
                              "exactly once in 'template'")
        start, stop = self._int("start"), self._int("exit")
        if not 0 <= start < stop:
            raise ConfigError(f"readout 'token_prepending' needs 0 <= start < exit, got start={start}, exit={stop}")

    def attach(self, backbone: nn.Module, tokenizer: Any) -> None:
        ph = self.params["placeholder"]
        if ph not in tokenizer.get_vocab():
            tokenizer.add_tokens([ph])
            old = backbone.get_input_embeddings().weight.shape[0]
            backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            weight = backbone.get_input_embeddings().weight
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for i in range(old, weight.shape[0]):
                    weight[i] = torch.randn(weight.shape[1], generator=gen).to(weight.dtype)
        self.placeholder_id = int(tokenizer.convert_tokens_to_ids(ph))
        super().attach(backbone, tokenizer)

    def forward(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor:
        ids, mask = feats["input_ids"], feats["attention_mask"]
        hit = (ids == self.placeholder_id) & mask.bool()
        if not bool(hit.any(dim=1).all()):
            raise ConfigError("token_prepending: a prompt lost its placeholder token")
        pst = hit.int().argmax(dim=1)
        last = last_token_index(mask)
        rows = torch.arange(ids.shape[0], device=ids.device)

        def prepend(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            h = args[0] if args else kwargs["hidden_states"]
            h = h.clone()
            h[rows, pst] = h[rows, last]
            if args:
                return (h, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": h}

        blocks = _blocks(backbone)
        handles = [blocks[i].register_forward_pre_hook(prepend, with_kwargs=True)
                   for i in range(self.params["start"], min(self.params["exit"], len(blocks)))]
        try:
            return self._last_tokens(backbone, feats)
        finally:
            for h in handles:
                h.remove()

    def st_chat_template(self, tokenizer: Any) -> str | None:
        return None


class Echo(Readout):
    """Echo embeddings: the text written twice (``template`` holds ``{text}`` twice); only the tokens of the
    second copy are pooled, by ``pool`` = 'mean' or 'last', from ``hidden_states[layer]``. The pieces are
    tokenized separately and right-padded, as the reference code does.

    Parameters: ``template`` ('Rewrite the sentence: {text}, rewritten sentence: {text}'), ``pool`` ('mean'),
    ``layer`` (-1). Springer et al. 2024, "Repetition Improves Language Model Embeddings".
    """

    name = "echo"
    defaults = {"template": ECHO, "pool": "mean", "layer": -1}
    padding_side = "right"

    def check(self) -> None:
        if self._template().count("{text}") != 2:
            raise ConfigError("readout parameter 'template' of 'echo' must contain '{text}' twice")
        if self.params["pool"] not in ("mean", "last"):
            raise ConfigError(f"readout parameter 'pool' of 'echo' must be 'mean' or 'last', got {self.params['pool']!r}")
        self.read_layers()

    def _pieces(self, text: str) -> tuple[str, str, str]:
        t = self.params["template"]
        cut = t.rindex("{text}")
        return t[:cut].replace("{text}", text), text, t[cut + len("{text}"):]

    def prompts(self, text: str) -> list[str]:
        return ["".join(self._pieces(text))]

    def featurize(self, tokenizer: Any, text: str, max_length: int | None) -> dict[str, list[list[int]]]:
        before, after = self._affixes

        def parts(t: str) -> tuple[list[int], list[int], list[int]]:
            return tuple(list(tokenizer(p, add_special_tokens=False)["input_ids"]) if p else []  # type: ignore[return-value]
                         for p in self._pieces(t))

        def build(t: str) -> list[int]:
            a, b, c = parts(t)
            return before + a + b + c + after

        text = _fit(tokenizer, text, build, max_length)
        a, b, c = parts(text)
        return {"rows": [before + a + b + c + after],
                "pool": [[0] * (len(before) + len(a)) + [1] * len(b) + [0] * (len(c) + len(after))]}

    def collate(self, tokenizer: Any, items: Sequence[dict[str, list[list[int]]]],
                device: torch.device | str) -> dict[str, Tensor]:
        feats = super().collate(tokenizer, items, device)
        pool, _ = _pad([it["pool"][0] for it in items], 0, self.padding_side, device)
        feats["pool_mask"] = pool
        return feats

    def forward(self, backbone: nn.Module, feats: dict[str, Tensor]) -> Tensor:
        pool = feats["pool_mask"]
        states = torch.stack(self._read(backbone, feats)).mean(0)
        if self.params["pool"] == "last":
            return states[torch.arange(states.shape[0], device=states.device), last_token_index(pool)]
        m = pool.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1)


READOUTS: dict[str, type[Readout]] = {cls.name: cls for cls in (
    PromptEOL, PromptICL, MetaEOL, PretendedCoT, KnowledgeEnhancement, ContrastivePrompt, TokenPrepending, Echo)}


def make_readout(name: str, params: dict[str, Any] | None = None, *, template: str | None = None) -> Readout:
    """The readout ``name`` with ``params``; ``template`` (the encoder's prompt_template) fills 'template' if unset."""
    params = dict(params or {})
    if template is not None and "template" in READOUTS[name].defaults:
        params.setdefault("template", template)
    return READOUTS[name](**params)


def check_params(name: str, params: dict[str, Any]) -> None:
    """Validate readout parameters for a config (raises ValueError naming the problem)."""
    if params and name not in READOUTS:
        raise ValueError(f"model.readout applies only to the readout poolings ({', '.join(READOUTS)}); "
                         f"pooling is '{name}'")
    if name in READOUTS:
        make_readout(name, params)
