"""Loading models quietly: transformers' load reports, weight-loading bars and fallback warnings
stay off the user's terminal (``attnlens --debug`` shows tracebacks, not these)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging (errors excepted), its progress bars and Python warnings, restoring all three."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def failure_cause(err: BaseException) -> str:
    """``TypeName: first line of the message`` (160 characters at most), for one-line errors."""
    text = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
