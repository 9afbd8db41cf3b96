"""Metrics comparing relevance with a reference or with the model's behaviour."""

from attnlens.metrics.clarity import gini, normalized_entropy
from attnlens.metrics.localization import pointing_game, segmentation_scores
from attnlens.metrics.spearman import spearman
from attnlens.metrics.summary import (
    ScoreSummary,
    bootstrap_median_interval,
    paired_wilcoxon,
    summarize_score_table,
    summarize_scores,
)

__all__ = [
    "ScoreSummary",
    "bootstrap_median_interval",
    "gini",
    "normalized_entropy",
    "paired_wilcoxon",
    "pointing_game",
    "segmentation_scores",
    "spearman",
    "summarize_score_table",
    "summarize_scores",
]
