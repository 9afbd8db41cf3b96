"""Metrics comparing relevance with a reference or with the model's behaviour."""

from attnlens.metrics.spearman import spearman
from attnlens.metrics.summary import ScoreSummary, paired_wilcoxon, summarize_scores

__all__ = ["ScoreSummary", "paired_wilcoxon", "spearman", "summarize_scores"]
