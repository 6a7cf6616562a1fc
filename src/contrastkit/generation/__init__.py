"""Text generation: decoders as functions over a causal LM and its KV cache (greedy, top-k / nucleus / typical
sampling, contrastive search, contrastive decoding, DoLa, contrastive input decoding), a text-level
``generate()``, and the papers' metrics in :mod:`contrastkit.generation.metrics`."""

from .api import STRATEGIES, Completion, generate, infer_strategy, strategy_parameters
from .decoders import (
                       GenerationOutput,
                       contrastive_decoding,
                       contrastive_input_decoding,
                       contrastive_search,
                       dola,
                       dola_candidate_layers,
                       early_exit_logits,
                       greedy_search,
                       sample,
)

__all__ = ["STRATEGIES", "Completion", "GenerationOutput", "contrastive_decoding", "contrastive_input_decoding",
           "contrastive_search", "dola", "dola_candidate_layers", "early_exit_logits", "generate", "greedy_search",
           "infer_strategy", "sample", "strategy_parameters"]
