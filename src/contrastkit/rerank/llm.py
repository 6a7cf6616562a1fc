"""An LLM reranker: pointwise relevance from a causal LM's next-token probabilities of "Yes" and "No".

Pointwise yes/no relevance generation (Liang et al., "Holistic Evaluation of Language Models", 2022;
Nogueira et al., "Document Ranking with a Pretrained Sequence-to-Sequence Model", 2020): the LM reads a
prompt holding the query and the document and
``relevance = P("Yes") / (P("Yes") + P("No"))`` at the answer position, i.e. ``sigmoid(logit_yes - logit_no)``
(each side sums its spellings, " Yes" and "Yes"). Several prompts ("views") can score the same pair;
their log-odds are averaged -- a simple form of the multi-view idea of "Multi-view-guided Passage
Reranking with Large Language Models" (MVP), which combines several views of the
query-document relation, here prompts that ask for relevance and for equivalence of meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["DEFAULT_VIEWS", "LLMReranker"]

DEFAULT_VIEWS: tuple[str, ...] = (
    "Query: {query}\nDocument: {document}\nIs the document relevant to the query? Answer Yes or No.\nAnswer:",
    ("Sentence A: {query}\nSentence B: {document}\nDo sentences A and B mean the same thing? Answer Yes or No."
     "\nAnswer:"),
)
"""Prompt views: the first asks for relevance, the second for equivalence of meaning (paraphrase)."""


def _single_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """Token ids of the spellings that are exactly one token (e.g. ' Yes' and 'Yes')."""
    ids: list[int] = []
    for s in spellings:
        toks = tokenizer.encode(s, add_special_tokens=False)
        if len(toks) == 1 and toks[0] not in ids:
            ids.append(int(toks[0]))
    return ids


class LLMReranker:
    """Scores (query, document) pairs with a causal LM's P(Yes) / (P(Yes) + P(No)) over one or more prompts."""

    def __init__(self, model: Any, tokenizer: Any, *, views: Sequence[str] = DEFAULT_VIEWS[:1],
                 yes: Sequence[str] = (" Yes", "Yes"), no: Sequence[str] = (" No", "No"), max_length: int = 512,
                 chat: bool | None = None) -> None:
        if not views or any("{query}" not in v or "{document}" not in v for v in views):
            raise ConfigError("every LLM reranker view must contain '{query}' and '{document}'")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.views = tuple(views)
        self.yes_ids = _single_token_ids(tokenizer, yes)
        self.no_ids = _single_token_ids(tokenizer, no)
        if not self.yes_ids or not self.no_ids:
            raise ConfigError(f"the tokenizer has no single-token spelling of {list(yes)} / {list(no)}")
        self.max_length = int(max_length)
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> LLMReranker:
        """Load a causal LM (hub name, dir, .gguf or alias such as ``smollm2-135m``) as a reranker."""
        from ..lm.causal import load_causal_lm

        model, tok = load_causal_lm(name)
        return cls(model, tok, **kwargs)

    def prompt(self, view: str, query: str, document: str) -> str:
        """The text the LM reads for one pair and view (through the chat template when the model has one)."""
        text = view.replace("{query}", query).replace("{document}", document)
        if self.chat:
            return str(self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                          add_generation_prompt=True))
        return text

    @torch.inference_mode()
    def _log_odds(self, prompts: list[str]) -> np.ndarray:
        """log P(yes) - log P(no) at the next token of each prompt (left-padded batch, exact positions)."""
        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            add_special = not self.chat  # a rendered chat template already holds its special tokens
            feats = tok(prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                        add_special_tokens=add_special)
        finally:
            tok.padding_side = side
        device = next(self.model.parameters()).device
        ids, mask = feats["input_ids"].to(device), feats["attention_mask"].to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        # the LM head on the last position only (logits_to_keep): over Gemma-3's 262k vocabulary, every position's
        # logits would cost more than the transformer
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
        logits = out.logits[:, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
        return (yes - no).cpu().numpy()

    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 8, activation: bool = True,
                show_progress: bool = False) -> np.ndarray:
        """Relevance of each pair: sigmoid of the views' mean log-odds (one view: P(Yes)/(P(Yes)+P(No)))."""
        pairs = [(str(q), str(d)) for q, d in pairs]
        total = np.zeros(len(pairs), dtype=np.float64)
        jobs = [(i, v) for v in self.views for i in range(len(pairs))]
        texts = [self.prompt(v, *pairs[i]) for i, v in jobs]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts: Any = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="llm rerank", unit="batch")
        for start in starts:
            idx = order[start:start + batch_size]
            odds = self._log_odds([texts[j] for j in idx])
            for j, o in zip(idx, odds):
                total[jobs[j][0]] += o
        mean = total / len(self.views)
        return (1.0 / (1.0 + np.exp(-mean)) if activation else mean).astype(np.float32)
