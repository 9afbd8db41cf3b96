"""The correlation study on any text classifier and dataset: score → summarize → write.

For every method and layer, the per-example Spearman correlation between the method's token
relevance and a reference explanation (the input-gradient saliency of the explained logit, as in
the thesis and Abnar & Zuidema 2020), summarised with a median, a bootstrap interval and a paired
Wilcoxon test against plain rollout. The runner is three pieces:
:func:`~attnlens.experiments.scoring.score` (examples → :class:`ScoreTable`, any shards merge to
the same numbers), :func:`~attnlens.experiments.study_summary.summarize` (→ a typed
:class:`StudySummary`) and the writers of :mod:`attnlens.experiments.writers`. ``attnlens sst2`` is
a preset of it (:mod:`attnlens.experiments.sst2`).
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attnlens._checks import ArgumentError, _check_choice, _check_creatable_folder, _check_device, _check_integer
from attnlens._options import option
from attnlens.experiments.outputs import check_output_folder
from attnlens.experiments.score_table import ScoreTable
from attnlens.experiments.scoring import REDUCTIONS, REFERENCES, TARGETS, TIES, ProgressFn, ScoreOptions, score
from attnlens.experiments.study_summary import StudySummary, summarize
from attnlens.methods._common import _HEAD_FUSIONS
from attnlens.methods.registry import MethodVariant, expand_methods, list_methods
from attnlens.methods.selective_rollout import DISTANCES

if TYPE_CHECKING:
    from attnlens.datasets import Examples
    from attnlens.models import Adapter

_SALIENCIES = ("sum_abs", "l2", "grad_x_input")


@dataclass(frozen=True)
class StudyOptions:
    """Options shared by ``attnlens study`` and its ``sst2`` preset; each field is a command-line option."""

    model: str | None = field(default=None, metadata=option(
        "hub id or local folder of a sequence classifier (default: $ATTNLENS_MODEL, "
        "textattack/bert-base-uncased-SST-2, or the fine-tuned default)", metavar="ID|DIR"))
    data: str | None = field(default=None, metadata=option(
        "a TSV/CSV/JSONL file, a folder of <split>.{tsv,csv,jsonl}, or a Hugging Face dataset name",
        metavar="FILE|DIR|NAME", aliases=("data_dir",)))
    split: str | None = field(default=None, metadata=option(
        "split of a folder or hub dataset (default: dev, validation, test or train, the first present)"))
    limit: int | None = field(default=None, metadata=option("first N examples only (default: all)", metavar="N"))
    methods: tuple[str, ...] = field(default=("raw", "rollout", "selective"), metadata=option(
        "comma list of registered methods", choices=list_methods))
    thresholds: tuple[str, ...] = field(default=("0.5", "1", "2"), metadata=option(
        "selective-rollout thresholds, comma list; one result selective@<t> each"))
    alphas: tuple[str, ...] = field(default=("0.9",), metadata=option(
        "network-diffusion strengths in [0, 1), comma list", flag="--alpha"))
    reduce: str = field(default="max", metadata=option(
        "relevance from joint attention: max over query rows (thesis), the readout row ([CLS]), or the mean",
        choices=REDUCTIONS))
    saliency: str = field(default="sum_abs", metadata=option(
        "input-gradient reduction: |Σ_d g|, ‖g‖₂ or |Σ_d g·e|", choices=_SALIENCIES))
    saliency_at: str = field(default="layer_input", metadata=option(
        "where the input gradient is taken (see README)", choices=("layer_input", "word_embeddings")))
    target: str = field(default="pred", metadata=option("explained class: predicted or gold", choices=TARGETS))
    reference: str = field(default="gradient", metadata=option(
        "the explanation methods are correlated with", choices=REFERENCES))
    ties: str = field(default="average", metadata=option(
        "Spearman ties: average ranks (= scipy) or dense ranks (the thesis's formula)", choices=TIES))
    batch_size: int = field(default=32, metadata=option("examples per batch, grouped by length", metavar="B"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))
    exclude_special: bool = field(default=False, metadata=option("drop [CLS]/[SEP] from the correlation"))
    distance: str = field(default="frobenius", metadata=option(
        "selective-rollout distance (frobenius_per_token divides by √n)", choices=DISTANCES))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=_HEAD_FUSIONS))
    seed: int = field(default=0, metadata=option("seed of the bootstrap resampling"))
    out: str | None = field(default=None, metadata=option(
        "output folder, new or empty (default: runs/<study>-<model>-<time>)", metavar="DIR", aliases=("out_dir",)))

    def score_options(self) -> ScoreOptions:
        """The options of :func:`~attnlens.experiments.scoring.score`."""
        return ScoreOptions(reduce=self.reduce, saliency=self.saliency, saliency_at=self.saliency_at,
                            target=self.target, reference=self.reference, ties=self.ties,
                            exclude_special=self.exclude_special, batch_size=self.batch_size)


@dataclass(frozen=True)
class StudyConfig(StudyOptions):
    """Options of ``attnlens study``: any text classifier on any labelled text dataset.

    Attributes:
        data: a TSV/CSV/JSONL file, a folder holding ``<split>.{tsv,csv,jsonl}`` (or
            ``sst2/<split>.tsv``), or a Hugging Face dataset name (needs ``attnlens[hub]``).
        split: which split of a folder or hub dataset (default: the loader's choice).
        text_column, label_column: column names (defaults: ``sentence``/``text``/``content``; ``label``).
    """

    text_column: str | None = field(default=None, metadata=option(
        "column holding the text (default: sentence, text or content)"))
    label_column: str | None = field(default=None, metadata=option("column holding the label (default: label)"))

    name = "study"

    def title(self, examples) -> str:
        return f"{getattr(examples, 'name', 'data')}"

    def load_examples(self):
        """The examples this study scores."""
        from attnlens.datasets import load_examples  # noqa: PLC0415

        if self.data is None:
            raise ArgumentError("Expected `data` to be a file, a folder or a Hugging Face dataset name, but got "
                                "none.", "data")
        return load_examples(self.data, split=self.split, text_column=self.text_column,
                             label_column=self.label_column, limit=self.limit)


@dataclass
class StudyResult:
    """What a study measured: the mergeable scores, their summary, and where they were written."""

    table: ScoreTable
    summary: StudySummary
    out: Path | None = None

    @property
    def correlations(self) -> dict[str, np.ndarray]:
        """Method → `(N, L)` per-example Spearman ρ, NaN where undefined."""
        return {name: self.table.metric("spearman", name) for name in self.table.methods}

    @property
    def accuracy(self) -> float:
        return self.summary.accuracy

    @property
    def n_examples(self) -> int:
        return self.summary.n_examples

    @property
    def model(self) -> str:
        return self.summary.model

    @property
    def summaries(self) -> dict[str, dict]:
        """Method → its ``results.json`` entry."""
        return self.summary.method_dicts()


def validate_study(config: StudyOptions) -> list[MethodVariant]:
    """Check every option before anything is loaded or written; return the expanded methods.

    Raises:
        ArgumentError: one line naming the bad option.
    """
    if hasattr(config, "split_choices"):
        _check_choice(config.split, "split", config.split_choices)
    config.score_options().check()
    _check_choice(config.device, "device", ("cpu", "cuda"))
    _check_device(config.device)
    _check_integer(config.limit, "limit", low=1, allow_none=True, description="a positive integer")
    _check_integer(config.seed, "seed")
    variants = expand_methods(list(config.methods), threshold=list(config.thresholds), alpha=list(config.alphas),
                              distance=config.distance, head_fusion=config.head_fusion)
    if config.out is not None:
        check_output_folder(config.out, "out")
    else:
        _check_creatable_folder("runs", "runs")  # the default output goes to a new folder inside runs/
    return variants


def _settings(config: StudyOptions) -> dict:
    return {"split": getattr(config, "split", None), "saliency": config.saliency, "saliency_at": config.saliency_at,
            "reduce": config.reduce, "target": config.target, "exclude_special": config.exclude_special,
            "distance": config.distance, "head_fusion": config.head_fusion, "reference": config.reference,
            "ties": config.ties}


def _rerun_config(config: StudyOptions, model: str) -> dict:
    """Everything needed to rerun the study (the ``config`` entry of ``results.json``)."""
    document = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    document["model"] = model
    document.pop("out", None)
    return document


def run_study(config: StudyOptions, *, adapter: Adapter | None = None, examples: Examples | None = None,
              progress: ProgressFn | None = None) -> StudyResult:
    """Run the correlation study (without writing files).

    Args:
        config: a :class:`StudyConfig` or :class:`~attnlens.experiments.sst2.SST2StudyConfig`.
        adapter: an already loaded adapter (tests, notebooks); else `config.model` is loaded.
        examples: already loaded examples; else the config loads them.
        progress: called with (examples done, total) after every batch, and with fractional
            counts within a batch by slow methods (attention flow).

    Returns:
        A :class:`StudyResult`.

    Raises:
        ValueError: on bad options, data or model (one line each).
    """
    methods = validate_study(config)
    if examples is None:
        examples = config.load_examples()
    elif config.limit is not None:
        examples = examples[: config.limit]
    model_name = config.model
    if adapter is None:
        from attnlens.models import load_adapter  # noqa: PLC0415
        from attnlens.models.defaults import resolve_sst2_model  # noqa: PLC0415

        model_name = resolve_sst2_model(config.model)
        adapter = load_adapter(model_name, device=config.device)
    if getattr(adapter, "task", "classification") != "classification":
        raise ArgumentError(f"Expected `model` to be a sequence classifier, but {model_name!r} is a "
                            f"{adapter.family!r} model ({getattr(adapter, 'task', '')}).", "model")
    model_name = str(model_name or getattr(getattr(adapter.model, "config", None), "_name_or_path", "model"))
    examples = align_labels(examples, adapter)
    meta = {"model": model_name, "data": getattr(examples, "source", None), **_settings(config)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = score(adapter, examples, methods, options=config.score_options(), meta=meta, progress=progress)
    _report_warnings(caught, adapter, len(examples))
    start = time.perf_counter()
    summary = summarize(table, seed=config.seed, device=config.device, title=config.title(examples),
                        model=model_name, settings=_settings(config), config=_rerun_config(config, model_name))
    summary.timings["summaries"] = time.perf_counter() - start
    return StudyResult(table=table, summary=summary)


def align_labels(examples: Examples, adapter: Adapter) -> Examples:
    """Examples whose labels are the model's class indices.

    Labels given as names (``examples.class_names``) are mapped through the model's own class
    names (``id2label``); a model with only generic names (``LABEL_0``, ...) takes the sorted
    names in order. Integer labels must be below the model's class count.

    Raises:
        ArgumentError: naming `data` when a label is not one of the model's classes.
    """
    import dataclasses  # noqa: PLC0415

    classes = int(adapter.num_classes)
    model_names = [adapter.label(i) for i in range(classes)]
    names = getattr(examples, "class_names", None)
    if names is None:
        labels = [e.label for e in examples if e.label is not None]
        if labels and max(labels) >= classes:
            raise ArgumentError(f"Expected the labels of `data` to be class indices in [0, {classes - 1}] of the "
                                f"model, but got {max(labels)}.", "data")
        return examples
    if all(re.fullmatch(r"LABEL_\d+", name) for name in model_names):
        if len(names) > classes:
            raise ArgumentError(f"Expected `data` to have at most the model's {classes} classes, but it has "
                                f"{len(names)}: {', '.join(names)}.", "data")
        warnings.warn(f"The model names no classes; taking the labels of the data in sorted order as classes 0..: "
                      f"{', '.join(names)}.", stacklevel=3)
        return examples
    lookup = {name.lower(): index for index, name in enumerate(model_names)}
    missing = [name for name in names if name.lower() not in lookup]
    if missing:
        raise ArgumentError(f"Expected the labels of `data` to be class names of the model ({', '.join(model_names)}), "
                            f"but got {', '.join(repr(m) for m in missing)}.", "data")
    mapping = [lookup[name.lower()] for name in names]
    relabelled = tuple(dataclasses.replace(e, label=None if e.label is None else mapping[e.label]) for e in examples)
    return dataclasses.replace(examples, examples=relabelled, class_names=tuple(model_names))


def _report_warnings(caught: list, adapter, total: int) -> None:
    """Re-emit the scoring's warnings, with every per-text truncation warning folded into one line."""
    truncated = [w for w in caught if "truncated to" in str(w.message)]
    for item in caught:
        if item not in truncated:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if truncated:
        limit = getattr(adapter, "max_length", "the model's maximum")
        warnings.warn(f"{len(truncated)} of {total} texts were longer than {limit} tokens and were truncated.",
                      stacklevel=3)


def default_out_dir(config: StudyOptions, model: str) -> Path:
    """``runs/<study>-<model>-<time>``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-")
    return Path("runs") / f"{config.name}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_and_write_study(config: StudyOptions, *, progress: ProgressFn | None = None) -> StudyResult:
    """Run the study and write its files to `config.out` (or a new folder under ``runs/``).

    This is what ``attnlens study`` and ``attnlens sst2`` call. Every option and the output
    location are checked before any work; the files are written atomically.

    Returns:
        The :class:`StudyResult`, with `out` set to the folder written.
    """
    from attnlens.experiments.writers import write_study_outputs  # noqa: PLC0415

    result = run_study(config, progress=progress)
    out = Path(config.out) if config.out is not None else default_out_dir(config, result.model)
    result.out = write_study_outputs(result.summary, out)
    return result


__all__ = [
    "StudyConfig",
    "StudyOptions",
    "StudyResult",
    "default_out_dir",
    "run_and_write_study",
    "run_study",
    "validate_study",
]
