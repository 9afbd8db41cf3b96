"""End-to-end studies over a dataset, writing machine- and human-readable results."""

from attnlens.experiments.attention_map import attention_map, attention_map_data
from attnlens.experiments.explain import Explanation, explain
from attnlens.experiments.finetune import FinetuneResult, finetune_sst2
from attnlens.experiments.sst2 import SST2StudyConfig, SST2StudyResult, run_sst2_study, write_sst2_outputs
from attnlens.paths import default_model_dir

__all__ = [
    "Explanation",
    "FinetuneResult",
    "SST2StudyConfig",
    "SST2StudyResult",
    "attention_map",
    "attention_map_data",
    "default_model_dir",
    "explain",
    "finetune_sst2",
    "run_sst2_study",
    "write_sst2_outputs",
]
