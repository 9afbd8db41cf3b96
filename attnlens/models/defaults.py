"""Which SST-2 classifier to explain when the user names none.

``python -m attnlens.models.defaults`` prints the model `resolve_sst2_model` picks and exits 0,
or prints why there is none and exits 1: ``make demo`` asks it before fine-tuning a default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from attnlens.models._factory import hub_status
from attnlens.paths import MODEL_ENV, default_model_dir, model_dir

THESIS_MODEL_ID = "textattack/bert-base-uncased-SST-2"


def resolve_sst2_model(model: str | None) -> str:
    """Pick the model: `model`, else ``$ATTNLENS_MODEL``, else the thesis's hub model when it is in
    the local Hugging Face cache or the hub is reachable, else the locally fine-tuned default
    (`attnlens.paths.default_model_dir`, written by ``attnlens finetune``).

    A bare name (``mpnet-sst2``, ``minilm-sst2``) that is no folder here but is a classifier saved
    by ``attnlens finetune`` under ``$ATTNLENS_HOME/models`` stands for that folder.

    Raises:
        ValueError: when none is available, in one line naming ``attnlens finetune`` and ``make demo``.
    """
    if model:
        return _saved_model(model)
    env = os.environ.get(MODEL_ENV)
    if env:
        return _saved_model(env)
    if _hub_model_available(THESIS_MODEL_ID):
        return THESIS_MODEL_ID
    local = default_model_dir()
    if (local / "config.json").is_file():
        return str(local)
    raise ValueError(
        f"Expected a model: pass `--model ID|DIR`, set ${MODEL_ENV}, make {THESIS_MODEL_ID} reachable, or run "
        f"`attnlens finetune` to create {local} (`make demo` does so itself), but none of these is available."
    )


def _saved_model(name: str) -> str:
    """`name`, or the folder ``$ATTNLENS_HOME/models/<name>`` when `name` is a bare name saved there."""
    if "/" in name or os.sep in name or Path(name).expanduser().exists():
        return name
    saved = model_dir(name)
    return str(saved) if (saved / "config.json").is_file() else name


def _hub_model_available(model_id: str) -> bool:
    return hub_status(model_id, timeout=5) in ("cached", "available")


def _main(argv: Sequence[str] | None = None) -> int:
    """Print the resolved default model on stdout (exit 0) or the reason there is none on stderr (exit 1);
    ``--quiet`` prints nothing."""
    quiet = "--quiet" in (sys.argv[1:] if argv is None else argv)
    try:
        model = resolve_sst2_model(None)
    except ValueError as err:
        if not quiet:
            print(f"attnlens: {err}", file=sys.stderr)
        return 1
    if not quiet:
        print(model)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
