"""Training: fine-tuning of the default SST-2 classifier."""

from attnlens.training.finetune import RESULT_FILE, FinetuneResult, finetune_sst2

__all__ = [
    "RESULT_FILE",
    "FinetuneResult",
    "finetune_sst2",
]
