"""Training: fine-tuning of the default SST-2 classifier."""

from attnlens.training.finetune import RESULT_FILE, FinetuneConfig, FinetuneResult, finetune_from_config, finetune_sst2

__all__ = [
    "RESULT_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "finetune_from_config",
    "finetune_sst2",
]
