"""Which SST-2 classifier to explain when the user names none."""

from __future__ import annotations

import os

from attnlens.models._factory import hub_status
from attnlens.paths import MODEL_ENV, default_model_dir

THESIS_MODEL_ID = "textattack/bert-base-uncased-SST-2"


def resolve_sst2_model(model: str | None) -> str:
    """Pick the model: `model`, else ``$ATTNLENS_MODEL``, else the thesis's hub model when it is in
    the local Hugging Face cache or the hub is reachable, else the locally fine-tuned default.

    Raises:
        ValueError: when none is available, saying how to get one.
    """
    if model:
        return model
    env = os.environ.get(MODEL_ENV)
    if env:
        return env
    if _hub_model_available(THESIS_MODEL_ID):
        return THESIS_MODEL_ID
    local = default_model_dir()
    if (local / "config.json").is_file():
        return str(local)
    raise ValueError(
        f"Expected a model: pass `--model ID|DIR`, set ${MODEL_ENV}, make {THESIS_MODEL_ID} reachable, or run "
        f"`attnlens finetune` to create {local}, but none of these is available."
    )


def _hub_model_available(model_id: str) -> bool:
    return hub_status(model_id, timeout=5) in ("cached", "available")
