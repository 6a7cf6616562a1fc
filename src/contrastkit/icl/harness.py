"""The ICL evaluation harness: select demonstrations for each query, prompt a local causal LM, score.

Classification scores every label word by its log-likelihood after the prompt and predicts the best one
(optionally with contextual calibration, Zhao et al., 2021); rewriting decodes greedily
(:func:`contrastkit.generation.generate`) up to the end of the line and reports corpus chrF (Popovic, 2015, via
``sacrebleu``). Prompts are the demonstrations, one template-filled block each, separated by a blank line, then
the query's block up to its label. Selectors return the most important example first; the prompt puts it
*last*, nearest the query (KATE's reversed order, Liu et al., 2022).

The sequential (Se^2) selector needs an LM score for a candidate sequence. With ``sequential_target='neighbours'``
(the default) a sequence is scored by the log-probability, renormalised over labels, of the gold labels of
``n_proxy`` pool examples that are the query's next-nearest neighbours after the candidates (proxies of the
query whose labels are known); ``'query'`` scores the query's own gold label: that reads the test label, so it
is an oracle upper bound, never a fair accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .scoring import calibrate_content_free, continuation_logprobs, normalize_label_scores
from .selectors import SELECTORS, cosine_to_query
from .tasks import ClassificationTask, RewriteTask

__all__ = ["ICLResult", "build_prompt", "chrf", "evaluate_classification", "evaluate_rewriting", "select_for_queries"]

SEPARATOR = "\n\n"


@dataclass
class ICLResult:
    """One (task, selector, k, seed) evaluation: its score (accuracy or chrF, x 100) and what produced it."""

    task: str
    selector: str
    k: int
    seed: int
    metric: str
    score: float
    n_queries: int
    seconds: float
    calibrate: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)
    selections: list[list[int]] = field(default_factory=list)

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (predictions and selections only with ``details``)."""
        d = asdict(self)
        if not details:
            d.pop("predictions")
            d.pop("selections")
        return d


def build_prompt(template: str, demos: Sequence[tuple[str, str]], query: str) -> str:
    """Demonstrations (in prompt order) filled into ``template`` ({text}/{label} or {source}/{target}), then the
    query's block cut right before its label (trailing spaces removed: the label is scored as ' ' + word)."""
    text_key, label_key = ("source", "target") if "{source}" in template else ("text", "label")
    if not template.rstrip().endswith("{" + label_key + "}"):
        raise ConfigError(f"the template must end with {{{label_key}}}: {template!r}")
    blocks = [template.format(**{text_key: x, label_key: y}) for x, y in demos]
    blocks.append(template.format(**{text_key: query, label_key: ""}).rstrip())
    return SEPARATOR.join(blocks)


def _prompt_order(selected: Sequence[int]) -> list[int]:
    return list(reversed(selected))


ScoreCache = dict[tuple[int, tuple[int, ...]], float]
"""Sequential selection's scores by (query index, demonstration sequence), for one task, pool and scorer."""


def _memoized(scorer: Callable[[int, list[list[int]]], Sequence[float]],
              cache: ScoreCache) -> Callable[[int, list[list[int]]], list[float]]:
    def score(qi: int, seqs: list[list[int]]) -> list[float]:
        missing = [s for s in seqs if (qi, tuple(s)) not in cache]
        if missing:
            cache.update({(qi, tuple(s)): float(v) for s, v in zip(missing, scorer(qi, missing))})
        return [cache[qi, tuple(s)] for s in seqs]

    return score


def select_for_queries(selector: str, query_embs: np.ndarray, pool_embs: np.ndarray, k: int, *, seed: int = 0,
                       labels: Sequence[Any] | None = None, params: dict[str, Any] | None = None,
                       scorer: Callable[[int, list[list[int]]], Sequence[float]] | None = None,
                       score_cache: ScoreCache | None = None) -> list[list[int]]:
    """Each query's demonstrations (pool indices, selection order) by the named selector.

    ``random`` draws from one generator seeded by ``seed``; ``label_coverage`` needs ``labels``;
    ``sequential`` needs ``scorer(query_index, sequences) -> one score per sequence``. ``score_cache`` keeps
    the scorer's values across calls on the same queries, pool and scorer: sequential selection of k examples
    repeats the first k steps of any larger k, so a run over k = 4 then 8 scores steps 1-4 once.
    """
    if selector not in SELECTORS:
        raise ConfigError(f"unknown selector '{selector}'; choose one of {', '.join(SELECTORS)}")
    if scorer is not None and score_cache is not None:
        scorer = _memoized(scorer, score_cache)
    fn = SELECTORS[selector]
    params = dict(params or {})
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for qi, q in enumerate(query_embs):
        if k == 0:
            out.append([])
        elif selector == "random":
            out.append(fn(q, pool_embs, k, rng=rng, **params))
        elif selector == "label_coverage":
            if labels is None:
                raise ConfigError("label_coverage needs the pool's labels")
            out.append(fn(q, pool_embs, k, labels=labels, **params))
        elif selector == "sequential":
            if scorer is None:
                raise ConfigError("sequential selection needs an LM scorer")
            out.append(fn(q, pool_embs, k, score_many=lambda seqs, qi=qi: scorer(qi, seqs), **params))
        else:
            out.append(fn(q, pool_embs, k, **params))
    return out


def _proxies(query_emb: np.ndarray, pool_embs: np.ndarray, skip: int, n: int) -> list[int]:
    order = np.argsort(-cosine_to_query(query_emb, pool_embs), kind="stable")
    return [int(i) for i in order[skip:skip + n]]


def evaluate_classification(model: Any, tokenizer: Any, task: ClassificationTask, pool_embs: Any, test_embs: Any,
                            *, selector: str = "knn", k: int = 4, seed: int = 0, calibrate: bool = False,
                            content_free: Sequence[str] = ("N/A",), selector_params: dict[str, Any] | None = None,
                            sequential_target: str = "neighbours", n_proxy: int = 1,
                            batch_size: int = 8, score_cache: ScoreCache | None = None) -> ICLResult:
    """Accuracy (x 100) of label-word log-likelihood prediction with ``k`` demonstrations chosen per query.

    ``pool_embs``/``test_embs`` are the embeddings of ``task.pool_texts``/``task.test_texts`` (any Encoder).
    ``calibrate``: divide label probabilities by those of the same prompt with each ``content_free`` input
    (averaged), Zhao et al. (2021). ``score_cache``: see :func:`select_for_queries` (one per task, pool and
    sequential settings).
    """
    pool = np.asarray(pool_embs.detach().cpu() if hasattr(pool_embs, "detach") else pool_embs, dtype=np.float64)
    test = np.asarray(test_embs.detach().cpu() if hasattr(test_embs, "detach") else test_embs, dtype=np.float64)
    if len(pool) != len(task.pool_texts) or len(test) != len(task.test_texts):
        raise ConfigError(f"{task.name}: {len(pool)}/{len(test)} embeddings for {len(task.pool_texts)} pool and "
                          f"{len(task.test_texts)} test texts")
    if sequential_target not in ("neighbours", "query"):
        raise ConfigError(f"sequential_target must be 'neighbours' or 'query', got {sequential_target!r}")
    words = [" " + w for w in task.label_words]
    t0 = time.perf_counter()

    def demos(sel: Sequence[int]) -> list[tuple[str, str]]:
        return [(task.pool_texts[i], task.label_words[int(task.pool_labels[i])]) for i in _prompt_order(sel)]

    scorer: Callable[[int, list[list[int]]], Sequence[float]] | None = None
    if selector == "sequential":
        n_cand = int((selector_params or {}).get("n_candidates", 10))

        def _score(qi: int, seqs: list[list[int]]) -> list[float]:
            if sequential_target == "query":
                targets = [(task.test_texts[qi], int(task.test_labels[qi]))]
            else:
                targets = [(task.pool_texts[j], int(task.pool_labels[j]))
                           for j in _proxies(test[qi], pool, n_cand, n_proxy)]
            prompts = [build_prompt(task.template, demos(seq), x) for seq in seqs for x, _ in targets]
            lp = normalize_label_scores(continuation_logprobs(model, tokenizer, prompts, words,
                                                              batch_size=batch_size))
            gold = np.array([y for _ in seqs for _, y in targets])
            per_prompt = lp[np.arange(len(prompts)), gold]
            return [float(v) for v in per_prompt.reshape(len(seqs), len(targets)).mean(axis=1)]

        scorer = _score

    selections = select_for_queries(selector, test, pool, k, seed=seed, labels=list(task.pool_labels),
                                    params=selector_params, scorer=scorer, score_cache=score_cache)
    prompts = [build_prompt(task.template, demos(sel), x) for sel, x in zip(selections, task.test_texts)]
    scores = continuation_logprobs(model, tokenizer, prompts, words, batch_size=batch_size)
    if calibrate:
        cf = [continuation_logprobs(model, tokenizer, [build_prompt(task.template, demos(sel), c)
                                                       for sel in selections], words, batch_size=batch_size)
              for c in content_free]
        # Zhao et al. average the content-free *probabilities* (renormalised over labels).
        p_cf = np.mean([np.exp(normalize_label_scores(c)) for c in cf], axis=0)
        scores = calibrate_content_free(scores, np.log(p_cf))
    pred = scores.argmax(axis=1)
    acc = 100.0 * float(np.mean(pred == task.test_labels)) if len(pred) else float("nan")
    params = dict(selector_params or {})
    if selector == "sequential":
        params.update(sequential_target=sequential_target, n_proxy=n_proxy)
    return ICLResult(task.name, selector, k, seed, "accuracy", acc, len(pred), time.perf_counter() - t0, calibrate,
                     params, [int(p) for p in pred], selections)


def _newline_ids(tokenizer: Any) -> list[int]:
    """Token ids whose text contains a line break (the rewriting stops at the end of the line)."""
    ids: set[int] = set()
    for s in ("\n", "\n\n", ".\n", "a\n"):
        for t in tokenizer(s, add_special_tokens=False)["input_ids"]:
            if "\n" in tokenizer.decode([t]):
                ids.add(int(t))
    return sorted(ids)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu's defaults: character 6-grams, beta 2) x 1 (sacrebleu already reports 0-100)."""
    try:
        import sacrebleu
    except ImportError as err:
        raise ConfigError("chrF needs sacrebleu: pip install 'contrastkit[icl]'") from err
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def evaluate_rewriting(model: Any, tokenizer: Any, task: RewriteTask, pool_embs: Any, test_embs: Any, *,
                       selector: str = "knn", k: int = 4, seed: int = 0,
                       selector_params: dict[str, Any] | None = None, max_new_tokens: int | None = None,
                       n_proxy: int = 1, batch_size: int = 4, score_cache: ScoreCache | None = None) -> ICLResult:
    """Corpus chrF of greedy rewrites of each test source with ``k`` selected (source, target) demonstrations.

    Decoding stops at EOS or the first line break; ``max_new_tokens`` defaults to 1.5 x the longest reference's
    token count + 8. The sequential selector scores a sequence by the log-likelihood of ``n_proxy`` neighbouring
    pool targets given their sources (never the test reference); ``score_cache`` as in
    :func:`evaluate_classification`.
    """
    from ..generation import generate

    pool = np.asarray(pool_embs.detach().cpu() if hasattr(pool_embs, "detach") else pool_embs, dtype=np.float64)
    test = np.asarray(test_embs.detach().cpu() if hasattr(test_embs, "detach") else test_embs, dtype=np.float64)
    if len(pool) != len(task.pool_sources) or len(test) != len(task.test_sources):
        raise ConfigError(f"{task.name}: embeddings do not match the pool/test sizes")
    t0 = time.perf_counter()

    def demos(sel: Sequence[int]) -> list[tuple[str, str]]:
        return [(task.pool_sources[i], task.pool_targets[i]) for i in _prompt_order(sel)]

    scorer: Callable[[int, list[list[int]]], Sequence[float]] | None = None
    if selector == "sequential":
        n_cand = int((selector_params or {}).get("n_candidates", 10))

        def _score_rewrite(qi: int, seqs: list[list[int]]) -> list[float]:
            proxies = _proxies(test[qi], pool, n_cand, n_proxy)
            per_proxy = [continuation_logprobs(model, tokenizer,
                                               [build_prompt(task.template, demos(seq), task.pool_sources[j])
                                                for seq in seqs], [" " + task.pool_targets[j]],
                                               batch_size=batch_size)[:, 0] for j in proxies]
            return [float(v) for v in np.mean(per_proxy, axis=0)]

        scorer = _score_rewrite

    selections = select_for_queries(selector, test, pool, k, seed=seed, params=selector_params, scorer=scorer,
                                    score_cache=score_cache)
    prompts = [build_prompt(task.template, demos(sel), x) for sel, x in zip(selections, task.test_sources)]
    if max_new_tokens is None:
        longest = max((len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in task.test_targets), default=8)
        max_new_tokens = int(1.5 * longest) + 8
    eos = _newline_ids(tokenizer)
    if tokenizer.eos_token_id is not None:
        eos.append(int(tokenizer.eos_token_id))
    outs = generate(model, tokenizer, prompts, strategy="greedy", batch_size=batch_size,
                    max_new_tokens=max_new_tokens, eos_token_id=eos)
    hyps = [o.text.split("\n", 1)[0].strip() for o in outs]
    score = chrf(hyps, task.test_targets)
    return ICLResult(task.name, selector, k, seed, "chrF", score, len(hyps), time.perf_counter() - t0, False,
                     dict(selector_params or {}), hyps, selections)
