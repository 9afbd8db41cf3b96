"""Metrics comparing relevance with a reference or with the model's behaviour."""

from attnlens.metrics.clarity import gini, normalized_entropy
from attnlens.metrics.faithfulness import (
    aopc_comprehensiveness,
    aopc_sufficiency,
    kendall_tau,
    leave_one_out,
    position_map,
    randomization_similarity,
    sanity_passes,
    top_k_counts,
    top_k_mask,
)
from attnlens.metrics.localization import pointing_game, segmentation_scores
from attnlens.metrics.perturbation import deletion_auc, insertion_auc, perturbation_auc, perturbation_order
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
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "bootstrap_median_interval",
    "deletion_auc",
    "gini",
    "insertion_auc",
    "kendall_tau",
    "leave_one_out",
    "normalized_entropy",
    "paired_wilcoxon",
    "perturbation_auc",
    "perturbation_order",
    "pointing_game",
    "position_map",
    "randomization_similarity",
    "sanity_passes",
    "segmentation_scores",
    "spearman",
    "summarize_score_table",
    "summarize_scores",
    "top_k_counts",
    "top_k_mask",
]
