"""Training: fine-tuning of the default SST-2 classifier; the tiny image classifiers of the vision tests."""

from attnlens.training.bases import BUNDLED_BASES, assemble_split_zip, mpnet_base_dir, resolve_bundled_base
from attnlens.training.finetune import RESULT_FILE, FinetuneConfig, FinetuneResult, finetune_from_config, finetune_sst2
from attnlens.training.vision import (
    PlacedDigitsModels,
    PlacedDigitsRecipe,
    TrainResult,
    evaluate_image_classifier,
    tiny_vim_classifier,
    tiny_vit_classifier,
    train_image_classifier,
    train_placed_digits_models,
)

__all__ = [
    "BUNDLED_BASES",
    "RESULT_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "PlacedDigitsModels",
    "PlacedDigitsRecipe",
    "TrainResult",
    "assemble_split_zip",
    "evaluate_image_classifier",
    "finetune_from_config",
    "finetune_sst2",
    "mpnet_base_dir",
    "resolve_bundled_base",
    "tiny_vim_classifier",
    "tiny_vit_classifier",
    "train_image_classifier",
    "train_placed_digits_models",
]
