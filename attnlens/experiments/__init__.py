"""End-to-end studies over a dataset, writing machine- and human-readable results."""

from attnlens.experiments.attention_map import AttentionMap, attention_map, attention_map_data, compute_attention_map
from attnlens.experiments.evaluate import EvaluateConfig, EvaluateResult, evaluate, run_and_write_evaluation
from attnlens.experiments.explain import ExplainConfig, Explanation, explain
from attnlens.experiments.image_attention_map import ImageAttentionMap, image_attention_map_data
from attnlens.experiments.image_maps import ImageConfig, ImageMaps, explain_images, image_maps
from attnlens.experiments.image_study import ImageStudyConfig, ImageStudySummary, run_image_study
from attnlens.experiments.score_table import ScoreTable
from attnlens.experiments.scoring import ScoreOptions, score
from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study, write_sst2_outputs
from attnlens.experiments.study import StudyConfig, StudyResult, run_and_write_study, run_study
from attnlens.experiments.study_summary import MethodSummary, StudySummary, summarize
from attnlens.experiments.writers import write_study_outputs
from attnlens.paths import default_model_dir

__all__ = [
    "AttentionMap",
    "EvaluateConfig",
    "EvaluateResult",
    "ExplainConfig",
    "Explanation",
    "ImageAttentionMap",
    "ImageConfig",
    "ImageMaps",
    "ImageStudyConfig",
    "ImageStudySummary",
    "MethodSummary",
    "SST2StudyConfig",
    "ScoreOptions",
    "ScoreTable",
    "StudyConfig",
    "StudyResult",
    "StudySummary",
    "attention_map",
    "attention_map_data",
    "compute_attention_map",
    "default_model_dir",
    "evaluate",
    "explain",
    "explain_images",
    "image_attention_map_data",
    "image_maps",
    "run_and_write_evaluation",
    "run_and_write_study",
    "run_image_study",
    "run_study",
    "run_sst2_study",
    "score",
    "summarize",
    "write_study_outputs",
    "write_sst2_outputs",
]
