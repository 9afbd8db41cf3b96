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
from attnlens.experiments.scoring import (
    REDUCTIONS,
    REFERENCES,
    TARGETS,
    TIES,
    ProgressFn,
    ScoreOptions,
    check_trace_options,
    length_batches,
    score,
)
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
    max_tokens: int | None = field(default=None, metadata=option(
        "truncate every text to N tokens (default: the model's maximum)", metavar="N"))
    methods: tuple[str, ...] = field(default=("raw", "rollout", "selective"), metadata=option(
        "comma list of registered methods", choices=list_methods))
    thresholds: tuple[str, ...] = field(default=("0.5", "1", "2"), metadata=option(
        "selective-rollout thresholds, comma list; one result selective@<t> each; auto:Q takes the Q quantile "
        "(0-1) of the model's distances between consecutive layers on the data (see --distances)"))
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
    form: str | None = field(default=None, metadata=option(
        "state-space models only: hidden attention of the selective scan (scan, the default) or of the whole mixer "
        "with its conv, gate and skip (unified; Zimerman, Ali & Wolf, ICLR 2025)", choices=("scan", "unified")))
    distance: str = field(default="frobenius", metadata=option(
        "selective-rollout distance (frobenius_per_token divides by √n)", choices=DISTANCES))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=_HEAD_FUSIONS))
    seed: int = field(default=0, metadata=option("seed of the bootstrap resampling"))
    out: str | None = field(default=None, metadata=option(
        "output folder, new or empty (default: runs/<study>-<model>-<time>); shard files go to <out>.shards/ while "
        "the run lasts", metavar="DIR", aliases=("out_dir",)))
    shard: str | None = field(default=None, metadata=option(
        "score only shard i of N (every N-th example from the i-th) into <out>.shards/, for job arrays; merge them "
        "with `attnlens merge` (torchrun and accelerate launch choose the shard themselves)", metavar="i/N"))
    resume: bool = field(default=False, metadata=option(
        "continue a run that stopped (killed, crashed): score only the batches its shard files lack"))
    keep_shards: bool = field(default=False, metadata=option("keep <out>.shards/ after the outputs are written"))
    report: bool = field(default=False, metadata=option(
        "also write report.html: one self-contained page with the per-layer plot, the tables and every example's "
        "last-layer ρ per method, sortable and searchable"))
    report_examples: int = field(default=200, metadata=option(
        "with --report: token heatmaps of every method for the first N examples (re-traced after the study; "
        "0: none)", metavar="N"))
    distances: bool = field(default=False, metadata=option(
        "instead of the study, write the distribution of the distances selective rollout thresholds (consecutive "
        "layers, Frobenius and per token) and the thresholds that skip 25/50/75 % of layers: distances.md, .csv, "
        ".json, .png in --out"))

    def score_options(self) -> ScoreOptions:
        """The options of :func:`~attnlens.experiments.scoring.score`."""
        return ScoreOptions(reduce=self.reduce, saliency=self.saliency, saliency_at=self.saliency_at,
                            target=self.target, reference=self.reference, ties=self.ties,
                            exclude_special=self.exclude_special, batch_size=self.batch_size, form=self.form)


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
    """Check every option before anything is loaded; return the expanded methods (the output folder is
    checked by the runs that write, :func:`run_and_write_study`).

    Raises:
        ArgumentError: one line naming the bad option.
    """
    if hasattr(config, "split_choices"):
        _check_choice(config.split, "split", config.split_choices)
    config.score_options().check()
    _check_choice(config.device, "device", ("cpu", "cuda"))
    _check_device(config.device)
    _check_integer(config.limit, "limit", low=1, allow_none=True, description="a positive integer")
    _check_integer(config.max_tokens, "max_tokens", low=2, allow_none=True, description="an integer of at least 2")
    _check_integer(config.seed, "seed")
    _check_integer(config.report_examples, "report_examples", low=0, description="a non-negative integer")
    from attnlens.experiments.layer_distances import parse_auto_threshold  # noqa: PLC0415

    # auto:Q thresholds are resolved once the model is loaded (_prepare); here they are only checked.
    plain = [t for t in config.thresholds if parse_auto_threshold(t) is None]
    thresholds = (plain or ["1"]) if len(plain) < len(config.thresholds) else list(config.thresholds)
    return expand_methods(list(config.methods), threshold=thresholds, alpha=list(config.alphas),
                          distance=config.distance, head_fusion=config.head_fusion)


def _resolve_auto_thresholds(config: StudyOptions, adapter: Adapter, examples: Examples,
                             model_name: str) -> list[MethodVariant] | None:
    """The methods with every ``auto:Q`` threshold replaced by the Q quantile of the consecutive-layer
    distances on `examples`; None when no threshold is automatic."""
    from attnlens.experiments.layer_distances import (  # noqa: PLC0415
        has_auto_thresholds,
        measure_layer_distances,
        resolve_thresholds,
    )

    if not has_auto_thresholds(config.thresholds):
        return None
    distribution = measure_layer_distances(adapter, examples, batch_size=config.batch_size,
                                           head_fusion=config.head_fusion, model=model_name)
    thresholds = resolve_thresholds(config.thresholds, distribution, distance=config.distance)
    return expand_methods(list(config.methods), threshold=list(thresholds), alpha=list(config.alphas),
                          distance=config.distance, head_fusion=config.head_fusion)


def _check_output(config: StudyOptions) -> None:
    """Before any work: `out` must be new or empty, or the default ``runs/`` creatable."""
    if config.out is not None:
        check_output_folder(config.out, "out")
    else:
        _check_creatable_folder("runs", "runs")  # the default output goes to a new folder inside runs/


def _settings(config: StudyOptions) -> dict:
    return {"split": getattr(config, "split", None), "saliency": config.saliency, "saliency_at": config.saliency_at,
            "reduce": config.reduce, "target": config.target, "exclude_special": config.exclude_special,
            "distance": config.distance, "head_fusion": config.head_fusion, "reference": config.reference,
            "ties": config.ties}


def _provenance(examples: Examples) -> dict:
    """What a result must say about where it came from: the package version and the resolved data source."""
    from attnlens import __version__  # noqa: PLC0415

    return {"attnlens_version": __version__, "data_source": getattr(examples, "source", None)}


def _rerun_config(config: StudyOptions, model: str) -> dict:
    """Everything needed to rerun the study (the ``config`` entry of ``results.json``)."""
    document = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    document["model"] = model
    for name in _PROCESS_OPTIONS:
        document.pop(name, None)
    return document


# How a run is carried out, not what it measures.
_PROCESS_OPTIONS = ("out", "shard", "resume", "keep_shards", "distances", "report", "report_examples")
_NOT_IN_SHARDS = ("device", "batch_size", "seed")  # shards scored with any of these merge (seed is the summary's)


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
    methods, adapter, examples, model_name, lengths = _prepare(config, adapter, examples)
    meta = {"model": model_name, "data": getattr(examples, "source", None), **_settings(config)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = score(adapter, examples, methods, options=config.score_options(), meta=meta, progress=progress,
                      lengths=lengths)
    _report_warnings(caught, adapter, len(examples))
    return StudyResult(table=table, summary=_summarize(table, config, model_name, examples))


def _summarize(table: ScoreTable, config: StudyOptions, model_name: str, examples: Examples) -> StudySummary:
    start = time.perf_counter()
    summary = summarize(table, seed=config.seed, device=config.device, title=config.title(examples),
                        model=model_name, settings={**_settings(config), **_provenance(examples)},
                        config=_rerun_config(config, model_name))
    summary.timings["summaries"] = time.perf_counter() - start
    return summary


def _prepare(config: StudyOptions, adapter: Adapter | None, examples: Examples | None, *,
             device: str | None = None, methods: list[MethodVariant] | None = None,
             ) -> tuple[list[MethodVariant], Adapter, Examples, str, list[int]]:
    """Check the options (unless `methods` says they were), load the examples and the model, and count
    every example's tokens once; return (methods, adapter, examples, model name, token counts)."""
    methods = validate_study(config) if methods is None else methods
    if examples is None:
        examples = config.load_examples()
    elif config.limit is not None:
        examples = examples[: config.limit]
    model_name = config.model
    if adapter is None:
        from attnlens.models import load_adapter  # noqa: PLC0415
        from attnlens.models.defaults import resolve_sst2_model  # noqa: PLC0415

        model_name = resolve_sst2_model(config.model)
        adapter = load_adapter(model_name, device=device or config.device)
    if getattr(adapter, "task", "classification") != "classification":
        raise ArgumentError(f"Expected `model` to be a sequence classifier, but {model_name!r} is a "
                            f"{adapter.family!r} model ({getattr(adapter, 'task', '')}).", "model")
    provides = set(getattr(adapter, "provides", ("attention",)))
    for variant in methods:  # before any scoring: gae on a Mamba model, mamba_attr on BERT
        if missing := sorted(variant.spec.needs - provides):
            raise ArgumentError(f"Expected every entry of `methods` to be a method this model supports, but "
                                f"{variant.spec.name!r} needs {', '.join(missing)}.", "methods")
    model_name = str(model_name or getattr(getattr(adapter.model, "config", None), "_name_or_path", "model"))
    check_trace_options(adapter, config.score_options())
    if config.max_tokens is not None and hasattr(adapter, "max_length"):  # None: no limit (a Mamba classifier)
        limit = adapter.max_length
        adapter.max_length = config.max_tokens if limit is None else min(int(limit), config.max_tokens)
    examples = align_labels(examples, adapter)
    methods = _resolve_auto_thresholds(config, adapter, examples, model_name) or methods
    lengths = adapter.count_tokens(examples.texts)
    if any(m.spec.name == "flow" for m in methods):
        _warn_if_flow_is_long(lengths, adapter.num_layers)
    return methods, adapter, examples, model_name, lengths


def _warn_if_flow_is_long(lengths: list[int], layers: int, limit_seconds: float = 60.0) -> None:
    """Attention flow costs ~n⁴ per example: say beforehand when it would take long, and how to cap it."""
    from attnlens.methods.attention_flow import estimate_flow_seconds  # noqa: PLC0415

    seconds = estimate_flow_seconds(lengths, layers)
    if seconds > limit_seconds:
        warnings.warn(f"attention flow on these {len(lengths)} examples (up to {max(lengths)} tokens) will take about "
                      f"{_duration(seconds)} on one thread; cap the tokens with --max-tokens N (cost grows as n⁴), "
                      f"use --limit, or leave flow out.", stacklevel=3)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


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


def shard_folder(out: str | Path) -> Path:
    """Where a run with output folder `out` keeps its shard files: ``<out>.shards`` beside it."""
    out = Path(out)
    return out.parent / f"{out.name}.shards"


def run_and_write_study(config: StudyOptions, *, progress: ProgressFn | None = None) -> StudyResult | None:
    """Run the study, one shard per process, and write its files to `config.out` (or a new folder under ``runs/``).

    This is what ``attnlens study`` and ``attnlens sst2`` call, alone or under ``torchrun`` /
    ``accelerate launch`` (every rank scores a strided shard; rank 0 merges) or with ``--shard i/N``.
    Every rank appends its scores to ``<out>.shards/shard-<rank>-of-<world>.jsonl`` batch by batch,
    so ``--resume`` continues a stopped run where it stopped; rank 0 then merges the shards,
    summarises and writes the outputs atomically, and removes the shard folder (``--keep-shards``
    keeps it). Every option and the output location are checked before any work.

    Returns:
        The :class:`StudyResult` (with `out` set) on the process that wrote the outputs; None on
        the other ranks and for a ``--shard`` run (merge those with :func:`merge_study_shards`).

    Raises:
        ArgumentError: on a bad option, a missing `out` where one is needed (sharded or resumed
            runs), or shards of another run in ``<out>.shards``.
    """
    from attnlens.experiments.distributed import barrier, launch_from_environment, process_group, rank_device  # noqa
    from attnlens.experiments.shards import ShardProgress, ShardWriter, data_hash, model_hash  # noqa: PLC0415

    launch = launch_from_environment(config.shard)
    if config.out is None and (launch.sharded or config.resume):
        raise ArgumentError("Expected `out` to name the output folder of a sharded or resumed run (every process and "
                            "every restart must find the same shard folder), but got none.", "out")
    device = rank_device(config.device, launch)
    methods = validate_study(config)  # before the process group: bad options fail at once, on every rank
    _check_output(config)
    with process_group(launch, device):
        methods, adapter, examples, model_name, lengths = _prepare(config, None, None, device=device,
                                                                   methods=methods)
        out = Path(config.out) if config.out is not None else default_out_dir(config, model_name)
        folder = shard_folder(out)
        hashed = model_hash(adapter.model)
        rows = {**_settings(config), **_provenance(examples), "model_hash": hashed}
        header = {
            "config": {k: v for k, v in _rerun_config(config, model_name).items() if k not in _NOT_IN_SHARDS},
            "data_hash": data_hash(examples), "model_hash": hashed,
            "methods": [m.name for m in methods], "families": {m.name: m.family for m in methods},
            "num_layers": adapter.num_layers, "rank": launch.rank, "world": launch.world, "total": len(examples),
            "batch_size": config.batch_size, "title": config.title(examples), "model": model_name,
            "settings": rows, "rerun": _rerun_config(config, model_name),
            "meta": {"model": model_name, "data": getattr(examples, "source", None), **_settings(config)}}
        _check_world_size(folder, launch.world)
        writer = ShardWriter(folder / launch.spec.file_name, header, resume=config.resume)
        try:
            positions = balanced_positions(lengths, launch.spec)
            part, part_lengths = examples.select(positions), [lengths[i] for i in positions]
            _check_resumed_batches(writer.done, part, part_lengths, config.batch_size)
            others = ShardProgress(folder, launch.world, exclude=launch.rank) if launch.world > 1 else None
            report = _global_progress(progress, others, len(examples)) if launch.is_main else None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = score(adapter, part, methods, options=config.score_options(), meta=header["meta"],
                              progress=report, skip_batches=set(writer.done), on_batch=writer.write_batch,
                              lengths=part_lengths)
            _report_warnings(caught, adapter, len(part))
            writer.finish(table.timings)
        finally:
            writer.close()
        if launch.manual:
            return None
        if launch.world > 1 and launch.is_main:
            _wait_for_shards(others, report, len(part), len(examples))
        barrier(launch)
    if not launch.is_main:
        return None
    result = merge_study_shards([folder], out=out, seed=config.seed, device=config.device,
                                keep_shards=config.keep_shards)
    if config.report:
        from attnlens.experiments.study_heatmaps import study_heatmaps  # noqa: PLC0415
        from attnlens.experiments.writers import write_study_report  # noqa: PLC0415

        drawn = examples[: config.report_examples]
        heatmaps = study_heatmaps(adapter, drawn, methods, reduce=config.reduce, saliency=config.saliency,
                                  saliency_at=config.saliency_at, target=config.target,
                                  batch_size=config.batch_size, trace_options=config.score_options().trace_options())
        write_study_report(result.summary, result.out, heatmaps=heatmaps)
    return result


def run_and_write_distances(config: StudyOptions, *, progress: ProgressFn | None = None) -> Path:
    """Measure the distances between the layers' attention on the study's data and write them (``--distances``).

    Selective Attention Rollout (the thesis): the distribution its threshold is chosen from, see
    :mod:`attnlens.experiments.layer_distances`. Writes ``distances.md``, ``distances.csv``,
    ``distances.json`` and ``distances.png`` to `config.out` (default: a new folder
    ``runs/distances-<model>-<time>``), every option and the output location checked first.

    Returns:
        The output folder.

    Raises:
        ArgumentError: on a bad option, model or data, or an unusable output folder.
    """
    from attnlens.experiments.layer_distances import measure_layer_distances, write_distance_outputs  # noqa
    from attnlens.models import load_adapter  # noqa: PLC0415
    from attnlens.models.defaults import resolve_sst2_model  # noqa: PLC0415

    if config.shard is not None or config.resume:
        raise ArgumentError("Expected `distances` to run in one process, without `shard` or `resume`, but got "
                            f"shard={config.shard!r}, resume={config.resume}.", "distances")
    validate_study(config)
    _check_output(config)
    examples = config.load_examples()
    model_name = resolve_sst2_model(config.model)
    adapter = load_adapter(model_name, device=config.device)
    if config.max_tokens is not None and hasattr(adapter, "max_length"):  # None: no limit (a Mamba classifier)
        limit = adapter.max_length
        adapter.max_length = config.max_tokens if limit is None else min(int(limit), config.max_tokens)
    distribution = measure_layer_distances(adapter, examples, batch_size=config.batch_size,
                                           head_fusion=config.head_fusion, model=model_name, progress=progress)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name or model_name).strip("-")
    out = Path(config.out) if config.out is not None else (
        Path("runs") / f"distances-{slug}-{time.strftime('%Y%m%d-%H%M%S')}")
    return write_distance_outputs(distribution, out)


def _check_world_size(folder: Path, world: int) -> None:
    """A shard folder holds the shards of one number of processes; another one cannot resume it."""
    if not folder.is_dir():
        return
    worlds = {int(match.group(1)) for match in (re.search(r"-of-(\d{5})\.jsonl$", p.name) for p in folder.iterdir())
              if match}
    if worlds - {world}:
        raise ArgumentError(f"Expected the shards in {folder} to come from {world} process(es), but it holds shards of "
                            f"{', '.join(str(w) for w in sorted(worlds))}; resume with that many processes, or remove "
                            f"the folder to start again (`resume`).", "resume")


def balanced_positions(lengths: list[int], spec) -> list[int]:
    """A shard's examples: strided over the examples sorted by token count (then position), so every
    shard gets the same mix of long and short inputs; fixed by the data alone, never by timing.

    Example:
        >>> from attnlens.experiments.shards import ShardSpec
        >>> balanced_positions([5, 9, 1, 7], ShardSpec(0, 2)), balanced_positions([5, 9, 1, 7], ShardSpec(1, 2))
        ([0, 1], [2, 3])
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return sorted(order[i] for i in spec.positions(len(order)))


def _check_resumed_batches(done: dict[int, list[dict]], part: Examples, lengths: list[int], batch_size: int) -> None:
    """A resumed shard must hold batches of the same plan (the same examples and --batch-size); `lengths`
    are the token counts of `part`."""
    if not done:
        return
    plan = length_batches(lengths, batch_size)
    for number, rows in done.items():
        if number >= len(plan) or [row["id"] for row in rows] != [part[i].id for i in plan[number]]:
            raise ArgumentError(f"Expected `batch_size` to be the one the resumed shard was scored with, but its "
                                f"batch {number} holds other examples (or the data changed).", "batch_size")


def _global_progress(progress: ProgressFn | None, others, total: int) -> ProgressFn | None:
    """Rank 0's bar: its own examples plus those every other shard has flushed."""
    if progress is None:
        return None

    def report(done: float, _own_total: int) -> None:
        progress(done + (others.poll()[0] if others is not None else 0), total)

    return report


def _wait_for_shards(others, report: ProgressFn | None, own: int, total: int, interval: float = 0.5) -> None:
    """Rank 0, done with its own `own` examples: wait until every other shard has its footer, updating the bar."""
    while others.poll()[1] < others.world - 1:
        if report is not None:
            report(own, total)  # the bar adds what the other shards flushed
        time.sleep(interval)


@dataclass(frozen=True)
class MergeConfig:
    """Options of ``attnlens merge``: summarise the shards of one run made by separate jobs."""

    shards: tuple[str, ...] = field(metadata=option(
        "shard files, or folders holding shard-*-of-*.jsonl (for example runs/x.shards)", positional=True))
    out: str | None = field(default=None, metadata=option(
        "output folder, new or empty (default: the one shard folder's name without .shards)", metavar="DIR",
        aliases=("out_dir",)))
    seed: int | None = field(default=None, metadata=option("seed of the bootstrap (default: the run's own)"))
    device: str = field(default="cpu", metadata=option("where the bootstrap runs", choices=("cpu", "cuda")))
    keep_shards: bool = field(default=False, metadata=option("keep the shard folders after the outputs are written"))

    def output_folder(self) -> Path:
        """`out`, or the single shard folder's name without ``.shards``."""
        if self.out is not None:
            return Path(self.out)
        folders = [Path(s) for s in self.shards]
        if len(folders) == 1 and folders[0].name.endswith(".shards"):
            return folders[0].parent / folders[0].name[: -len(".shards")]
        raise ArgumentError("Expected `out` when the shards are not one <out>.shards folder, but got none.", "out")


def merge_from_config(config: MergeConfig) -> StudyResult:
    """:func:`merge_study_shards` with the options of a :class:`MergeConfig` (what ``attnlens merge`` calls)."""
    _check_integer(config.seed, "seed", allow_none=True)
    _check_device(config.device)
    return merge_study_shards(list(config.shards), out=config.output_folder(), seed=config.seed,
                              device=config.device, keep_shards=config.keep_shards)


def merge_study_shards(shards: list[str | Path], *, out: str | Path, seed: int | None = None,
                       device: str = "cpu", keep_shards: bool = True) -> StudyResult:
    """Merge the shard files of one run, summarise, and write the outputs to `out`.

    What ``attnlens merge`` and rank 0 of a sharded run call. Refuses shards of different runs
    (config, data or model hash), missing ranks and unfinished shards, naming what differs.

    Args:
        shards: shard files or folders holding them.
        out: the output folder (new or empty).
        seed: seed of the bootstrap; None takes the run's own.
        device: where the bootstrap runs.
        keep_shards: keep the shard files; else a folder given in `shards` is removed after the
            outputs are written.

    Returns:
        The :class:`StudyResult` with `out` set.
    """
    import shutil  # noqa: PLC0415

    from attnlens.experiments.shards import merge_shards  # noqa: PLC0415
    from attnlens.experiments.writers import write_study_outputs  # noqa: PLC0415

    check_output_folder(out, "out")
    table, header, ranks = merge_shards(shards)
    rerun = dict(header["rerun"])
    start = time.perf_counter()
    summary = summarize(table, seed=rerun.get("seed", 0) if seed is None else seed, device=device,
                        title=header["title"], model=header["model"], settings=header["settings"], config=rerun)
    summary.timings["summaries"] = time.perf_counter() - start
    summary.timings["ranks"] = ranks
    result = StudyResult(table=table, summary=summary, out=write_study_outputs(summary, out))
    if not keep_shards:
        for folder in shards:
            if Path(folder).is_dir():
                shutil.rmtree(folder, ignore_errors=True)
    return result


__all__ = [
    "MergeConfig",
    "StudyConfig",
    "StudyOptions",
    "StudyResult",
    "default_out_dir",
    "merge_from_config",
    "merge_study_shards",
    "run_and_write_distances",
    "run_and_write_study",
    "run_study",
    "shard_folder",
    "validate_study",
]
