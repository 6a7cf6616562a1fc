"""Routing with embeddings: a semantic router (routes by example utterances, calibrated "no route" threshold)
and cost-aware routing between LLMs (kNN over measured quality and cost; CSCR's contrastive prompt/model space).

    from contrastkit.route import SemanticRouter
    router = SemanticRouter(encoder, {"weather": ["will it rain tomorrow", ...], "music": [...]})
    router.calibrate(heldout_texts, heldout_routes)   # None = no route
    router.route(["play something by Miles Davis"])    # ['music'] or [None]
"""

from .cost_aware import (
    ContrastiveCostRouter,
    FitReport,
    KNNRouter,
    choose_under_cost,
    cost_band_positives,
    cost_bands,
    cost_spectrum_infonce,
    logit_footprint,
    oracle_choice,
    perplexity_fingerprint,
)
from .semantic import SemanticRouter, calibrate_threshold, route_scores

__all__ = ["ContrastiveCostRouter", "FitReport", "KNNRouter", "SemanticRouter", "calibrate_threshold",
           "choose_under_cost", "cost_band_positives", "cost_bands", "cost_spectrum_infonce", "logit_footprint",
           "oracle_choice", "perplexity_fingerprint", "route_scores"]
