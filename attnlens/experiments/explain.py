"""Explain one prediction of any supported model: load → trace → method → relevance → heatmap.

The method comes from the registry (:func:`attnlens.methods.registry.list_methods`), the model
family from the adapter registry; the relevance is the readout row of the method's joint attention
after the last layer (the [CLS] row of an encoder, the last token of a causal model). The
returned :class:`Explanation` also holds the model's prediction and class probabilities, and
renders itself inline in a notebook (``_repr_html_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_integer, _check_number
from attnlens._files import _check_output_file, _write_atomic
from attnlens._options import option
from attnlens.methods._common import _HEAD_FUSIONS
from attnlens.experiments.scoring import ScoreOptions, check_trace_options
from attnlens.methods.registry import MethodCache, get_method, list_methods, method_variant
from attnlens.methods.relevance import relevance
from attnlens.viz.token_heatmap import token_heatmap_fragment, token_heatmap_page

ROLLOUT_NOTE = "rollout is class-agnostic (the same for every target); the saliency column is for the target"
LANGUAGE_MODEL_TOP = 5  # next tokens listed with their probabilities for a language model


@dataclass(frozen=True)
class ExplainConfig:
    """Options of ``attnlens explain``; each field is a command-line option."""

    model: str = field(metadata=option("hub id or local folder (text classifier or Mamba LM)", metavar="ID|DIR",
                                       aliases=("model_name_or_path",)))
    text: str | None = field(default=None, metadata=option("the text to explain (or give --file)", positional=True,
                                                           aliases=("texts",)))
    file: str | None = field(default=None, metadata=option(
        "explain every non-empty line of this UTF-8 file instead of TEXT (one model load; results one after "
        "another, a JSON list with --json, one page with --html)", metavar="PATH"))
    target: str | None = field(default=None, metadata=option(
        "class index or name, or for a language model a token id or single-token string (default: the model's "
        "own prediction). Rollout is class-agnostic: the target changes the saliency column (and mamba_attr), "
        "not the rollout relevance"))
    method: str = field(default="rollout", metadata=option(
        "registered method (mamba_attr needs a Mamba model, gae a softmax-attention model with attention gradients)", choices=list_methods))
    start_layer: int = field(default=0, metadata=option("first layer composed by rollout-type methods"))
    threshold: float = field(default=1.0, metadata=option("selective-rollout threshold"))
    alpha: float = field(default=0.9, metadata=option("network-diffusion strength in [0, 1)"))
    head_fusion: str = field(default="mean", metadata=option("how heads are fused", choices=_HEAD_FUSIONS))
    top: int = field(default=10, metadata=option("rows in the tables of most relevant tokens, special tokens "
                                                 "excluded (terminal, --html page; --json ranks them)"))
    html: str | None = field(default=None, metadata=option(
        "also write an HTML heatmap with the table to this file (checked before the model loads; missing folders "
        "are created)", metavar="PATH"))
    json: bool = field(default=False, metadata=option(
        "print one JSON document on stdout instead of the heatmap and table (a list with --file)"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))
    form: str | None = field(default=None, metadata=option(
        "state-space models only: hidden attention of the selective scan (scan, the default) or of the whole mixer "
        "with its conv, gate and skip (unified; Zimerman, Ali & Wolf, ICLR 2025)", choices=("scan", "unified")))


class Explanation(NamedTuple):
    """Result of :func:`explain`.

    Attributes:
        tokens: the text's token strings.
        relevance: `(n,)` relevance per token (the readout row of the joint attention). With
            ``"rollout"`` it does not depend on the target.
        target: the explained token id or class.
        target_label: the target as text (a token or a class name).
        method: the method used.
        html: the written page, or None.
        saliency: `(n,)` input-gradient saliency of the target's logit per token (it does depend
            on the target), or None when the adapter records none.
        special: `(n,)` bool, True on special tokens ([CLS], [SEP], ...); all False when the
            adapter does not say.
        probabilities: `(C,)` softmax of the model's logits (over the vocabulary for a language
            model's next token).
        prediction: the most probable class or token id.
        prediction_label: the prediction as text.
        top_classes: `(label, probability)` pairs, most probable first: every class of a
            classifier, the 5 most probable next tokens of a language model.
        text: the explained text.
        top: rows of the HTML table (page and notebook display); None lists every token.
    """

    tokens: list[str]
    relevance: Tensor
    target: int
    target_label: str
    method: str
    html: Path | None
    saliency: Tensor | None
    special: Tensor
    probabilities: Tensor
    prediction: int
    prediction_label: str
    top_classes: list[tuple[str, float]]
    text: str
    top: int | None = None

    def _title(self) -> str:
        title = f"attnlens {self.method}: explaining {self.target_label!r}"
        if self.target != self.prediction:
            title += f" (the model predicted {self.prediction_label!r})"
        return title

    def prediction_line(self) -> str:
        """``prediction: negative (0.91); positive 0.09``: the `top_classes` with their probabilities.

        A language model's next tokens are quoted (``prediction: ' Paris' (0.41); ' the' 0.08; ...``).

        Returns:
            One line of text.
        """
        quote = repr if len(self.top_classes) < self.probabilities.numel() else str
        (best, best_p), *others = self.top_classes
        return f"prediction: {quote(best)} ({best_p:.2f})" + "".join(f"; {quote(label)} {p:.2f}" for label, p in others)

    def _note(self) -> str:
        line = self.prediction_line()
        note = f"{line[0].upper()}{line[1:]}. "
        note += (f"R{ROLLOUT_NOTE[1:]} ({self.target_label!r})." if self.method == "rollout" else
                 f"Relevance and saliency are for the target {self.target_label!r}.")
        return note + " Colours are scaled over the non-special tokens; special tokens are grey."

    def to_html(self) -> str:
        """The HTML fragment of the page (heading, prediction, coloured tokens, table of `top` rows), no page around.

        Returns:
            A ``<div>`` with its own scoped style, as written by ``explain(..., html=PATH)``.
        """
        return token_heatmap_fragment(self.tokens, self.relevance, title=self._title(), saliency=self.saliency,
                                      special=self.special, note=self._note(), top=self.top)

    def _repr_html_(self) -> str:
        """The inline display of Jupyter and other notebooks: :meth:`to_html`."""
        return self.to_html()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``attnlens explain --json`` prints).

        Tokens are listed in text order; ``rank`` gives the place of each non-special token by
        relevance (1 = most relevant) among the `top` most relevant, and None for special
        tokens and those outside the top.

        Returns:
            A dict of text, method, target and target_label, prediction and prediction_label,
            probabilities (label → probability, see `top_classes`), tokens, relevance, saliency
            (or None), special, rank and top.
        """
        ordinary = sorted((i for i, s in enumerate(self.special.tolist()) if not s),
                          key=lambda i: (-float(self.relevance[i]), i))
        ranks: list[int | None] = [None] * len(self.tokens)
        for place, index in enumerate(ordinary[:self.top] if self.top is not None else ordinary, start=1):
            ranks[index] = place
        return {"text": self.text, "method": self.method, "target": self.target, "target_label": self.target_label,
                "prediction": self.prediction, "prediction_label": self.prediction_label,
                "probabilities": {label: _finite(p) for label, p in self.top_classes},
                "tokens": list(self.tokens), "relevance": [_finite(v) for v in self.relevance.tolist()],
                "saliency": None if self.saliency is None else [_finite(v) for v in self.saliency.tolist()],
                "special": [bool(v) for v in self.special.tolist()], "rank": ranks, "top": self.top}


def _finite(value: float) -> float | None:
    """A float for JSON: None for NaN and infinities (which JSON cannot hold)."""
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _resolve_target(adapter, target: int | str | None) -> int | None:
    """A class index or token id from an int, a digit string, a class name or a single-token string."""
    if target is None or isinstance(target, int):
        return target
    text = str(target)
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(adapter.class_index(text))
    except ArgumentError:
        raise
    except ValueError as err:  # the adapter's message names `target`: let the CLI spell it `--target`
        raise ArgumentError(str(err), "target") from err


def _explain_check(text: object, *, method: str, start_layer: int, threshold: float, alpha: float,
                   head_fusion: str, top: int | None) -> None:
    """The checks of :func:`explain` that need no model."""
    _check_choice(method, "method", list_methods())
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError(f"Expected `text` to be a non-empty string, but got {text!r}.", "text")
    _check_integer(start_layer, "start_layer")
    _check_number(threshold, "threshold", low=0.0, allow_inf=True)
    _check_number(alpha, "alpha", low=0.0, high=1.0, high_inclusive=False)
    _check_choice(head_fusion, "head_fusion", _HEAD_FUSIONS)
    _check_integer(top, "top", low=1, allow_none=True)


def _warn_if_flow_is_long(tokens: int, layers: int, limit_seconds: float = 30.0) -> None:
    """Attention flow costs ~n⁴: say beforehand when one text would take long."""
    import warnings  # noqa: PLC0415

    from attnlens.methods.attention_flow import estimate_flow_seconds  # noqa: PLC0415

    seconds = estimate_flow_seconds([tokens], layers, every_layer=False)
    if seconds > limit_seconds:
        warnings.warn(f"attention flow on {tokens} tokens will take about {seconds / 60:.0f} minutes on one thread "
                      f"(its cost grows as n⁴); Ctrl-C stops it.", stacklevel=3)


def explain(
    model_name_or_path: str | None,
    text: str,
    *,
    target: int | str | None = None,
    method: str = "rollout",
    html: str | Path | None = None,
    start_layer: int = 0,
    threshold: float = 1.0,
    alpha: float = 0.9,
    head_fusion: str = "mean",
    device: str = "cpu",
    top: int | None = None,
    adapter: object | None = None,
    form: str | None = None,
) -> Explanation:
    """Explain one model prediction on `text` with a registered method (default: Attention Rollout).

    Attention Rollout (Abnar & Zuidema 2020) or any method of the registry, read at the adapter's
    readout row: the last token for causal language models (the next-token prediction), [CLS]
    otherwise.

    Args:
        model_name_or_path: Hugging Face id or local folder; ignored when `adapter` is given.
        text: the text to explain.
        target: token id or single-token string (language models), class index or class name to
            explain; None explains the model's own prediction. Rollout relevance is the same for
            every target; the saliency and ``"mamba_attr"`` depend on it.
        method: a registered method (``rollout``, ``selective``, ``diffused_rollout``, ``flow``,
            ``mamba_attr`` for Mamba models, ...).
        html: where to write an HTML heatmap (atomically; missing parent folders are created);
            None writes nothing. Checked before the model is loaded.
        start_layer: first layer composed by rollout-type methods.
        threshold: selective-rollout threshold.
        alpha: network-diffusion strength.
        head_fusion: how heads are fused.
        device: where the model runs.
        top: rows of the HTML table (the page and the notebook display): that many most relevant
            non-special tokens; None lists every token.
        adapter: an already built adapter (for example around an in-memory model).
        form: state-space models only: ``"scan"`` (α, the default) or ``"unified"`` (the whole
            mixer, Zimerman, Ali & Wolf, ICLR 2025); None leaves the adapter's default.

    Returns:
        An :class:`Explanation`, with the prediction and the class probabilities (softmax of the
        logits); in a notebook it displays as the HTML heatmap.

    Raises:
        ValueError: on an empty text, an unknown method, a target that is not one token or
            class, a method whose needs the model cannot meet (``"mamba_attr"`` without a Mamba
            model), or an `html` path that is an existing folder or lies under a file or a
            read-only folder.
    """
    _explain_check(text, method=method, start_layer=start_layer, threshold=threshold, alpha=alpha,
                   head_fusion=head_fusion, top=top)
    if html is not None:
        html = _check_output_file(html, "html")
    if adapter is None:
        if model_name_or_path is None:
            raise ValueError("Expected `model_name_or_path` or `adapter`, but got neither.")
        from attnlens.models import load_adapter  # noqa: PLC0415

        adapter = load_adapter(model_name_or_path, device=device)
    target = _resolve_target(adapter, target)
    spec = get_method(method)
    family = getattr(adapter, "family", "")
    if not spec.needs <= set(getattr(adapter, "provides", ("attention",))):
        raise ArgumentError(_missing_needs_message(adapter, family, method), "method")
    options = ScoreOptions(form=form)
    options.check()
    check_trace_options(adapter, options)
    trace = adapter.trace([text], target=target, **options.trace_options())
    variant = method_variant(method, start_layer=start_layer, threshold=threshold, alpha=alpha, head_fusion=head_fusion)
    if method == "flow":
        _warn_if_flow_is_long(int(trace.mask[0].sum()), trace.attentions.shape[1])
    cache = MethodCache(trace.attentions, trace.mask, extras=trace.extras, readout=trace.readout)
    joint = variant.compute(cache).joint[:, -1]
    valid = trace.mask[0]
    scores = relevance(joint, mask=trace.mask, reduce="readout", readout=trace.readout)[0][valid]
    scores = scores.detach().to(torch.float32).cpu()
    saliency = None if trace.saliency is None else trace.saliency[0][valid].detach().to(torch.float32).cpu()
    special = (torch.zeros(scores.shape, dtype=torch.bool) if trace.special_mask is None
               else trace.special_mask[0][valid].detach().cpu())
    chosen = int(trace.target[0])
    probabilities = torch.softmax(trace.logits[0].detach().to(torch.float32), dim=-1).cpu()
    prediction = int(probabilities.argmax())
    shown = min(int(probabilities.numel()), LANGUAGE_MODEL_TOP) if getattr(adapter, "task", "") == \
        "language_modeling" else int(probabilities.numel())
    ranked = torch.argsort(probabilities, descending=True, stable=True)[:shown].tolist()
    result = Explanation(tokens=trace.tokens[0], relevance=scores, target=chosen, target_label=adapter.label(chosen),
                         method=method, html=None, saliency=saliency, special=special, probabilities=probabilities,
                         prediction=prediction, prediction_label=adapter.label(prediction),
                         top_classes=[(adapter.label(i), float(probabilities[i])) for i in ranked], text=text, top=top)
    if html is not None:
        result = result._replace(html=_write_page(html, [result]))
    return result


def _write_page(path: Path, results: list[Explanation]) -> Path:
    """One HTML page holding every explanation's fragment, under the first one's title (or a count)."""
    title = results[0]._title() if len(results) == 1 else f"attnlens {results[0].method}: {len(results)} texts"
    return _write_atomic(path, token_heatmap_page([result.to_html() for result in results], title=title))


def _read_lines(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ArgumentError(f"Expected `file` to be a readable text file, but {str(file)!r} "
                            f"{'is a folder' if file.is_dir() else 'does not exist'}.", "file")
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise ArgumentError(f"Expected `file` to be UTF-8 text, but {str(file)!r} is not ({err.reason}).",
                            "file") from err
    lines = [line for line in lines if line]
    if not lines:
        raise ArgumentError(f"Expected `file` to hold at least one non-empty line, but {str(file)!r} has none.",
                            "file")
    return lines


def explain_config(config: ExplainConfig) -> list[Explanation]:
    """:func:`explain` with the options of an :class:`ExplainConfig` (what ``attnlens explain`` calls).

    The model is loaded once for all texts: `config.text`, or every non-empty line of
    `config.file`; with `config.html` one page holds them all.

    Args:
        config: the options.

    Returns:
        One :class:`Explanation` per text, in order.

    Raises:
        ValueError: when both or neither of `text` and `file` are given, on an unreadable or
            empty file, and as :func:`explain`.
    """
    _check_integer(config.top, "top", low=1)
    if (config.text is None) == (config.file is None):
        raise ArgumentError("Expected a `text` or a `file`, but got " + ("both." if config.file else "neither."),
                            "file")
    texts = [config.text] if config.file is None else _read_lines(config.file)
    html = None if config.html is None else _check_output_file(config.html, "html")
    options = {"target": config.target, "method": config.method, "start_layer": config.start_layer,
               "threshold": config.threshold, "alpha": config.alpha, "head_fusion": config.head_fusion,
               "top": config.top, "form": config.form}
    for text in texts:  # every usage error before the model loads
        _explain_check(text, method=config.method, start_layer=config.start_layer, threshold=config.threshold,
                       alpha=config.alpha, head_fusion=config.head_fusion, top=config.top)
    ScoreOptions(form=config.form).check()
    from attnlens.models import load_adapter  # noqa: PLC0415

    adapter = load_adapter(config.model, device=config.device)
    results = [explain(None, text, adapter=adapter, **options) for text in texts]
    if html is not None:
        path = _write_page(html, results)
        results = [result._replace(html=path) for result in results]
    return results


def _missing_needs_message(adapter: object, family: str, method: str) -> str:
    model = getattr(adapter, "model", None)
    kind = type(model).__name__ if model is not None else type(adapter).__name__
    mamba_needs = {"mamba_attr": "residual-stream", "mamba_attr_alpha": "hidden-attention"}
    if method in mamba_needs:
        return (f"Expected a Mamba model for `method` {method!r} (it needs {mamba_needs[method]} gradients), but got "
                f"a {family!r}-family model ({kind}).")
    needs = ", ".join(sorted(get_method(method).needs))
    return f"Expected a model whose traces hold {needs} for `method` {method!r}, but got a {family!r}-family model " \
           f"({kind})."


__all__ = ["ROLLOUT_NOTE", "ExplainConfig", "Explanation", "explain", "explain_config"]
