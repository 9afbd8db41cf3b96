"""The one table of propagation methods: names, parameters, needs, and a batched compute.

Every method that turns a trace's attention into per-layer joint attention registers here once,
with its family, its parameters (type, range, default, whether a list of values sweeps it into
one variant per value), what it needs from the trace, the public function holding its math, and
a compute over a per-batch :class:`MethodCache`. The cache is what studies share: heads are fused
once, ``norm_rows(A + I)`` is built once per source, diffusion runs once per α, and selective
rollout runs every threshold of a sweep in one pass. :func:`list_methods` is the list the study,
``explain``, ``attention-map`` and the command line offer.

Variant names carry their swept values as written: ``selective@0.5``, ``diffusion@0.9``,
``diffused_rollout@0.9``, ``diffused_selective@0.9:0.5``.

Example:
    >>> import torch
    >>> from attnlens.methods.registry import MethodCache, expand_methods
    >>> attn = torch.softmax(torch.randn(2, 3, 2, 4, 4), dim=-1)
    >>> variants = expand_methods(["rollout", "selective"], threshold=["0.5", "1"])
    >>> [v.name for v in variants]
    ['rollout', 'selective@0.5', 'selective@1']
    >>> cache = MethodCache(attn, torch.ones(2, 4, dtype=torch.bool))
    >>> variants[1].compute(cache).joint.shape
    torch.Size([2, 3, 4, 4])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, ArgumentTypeError, _check_choice, _check_integer
from attnlens.methods._common import _HEAD_FUSIONS, _apply_mask, _fuse_if_per_head, _residual_attention
from attnlens.methods.attention_flow import attention_flow
from attnlens.methods.gradient_rollout import _gradient_rollout_compute, gradient_rollout
from attnlens.methods.mamba_attr import (
    _mamba_attr_compute,
    _mamba_attr_residual_compute,
    mamba_attr,
    mamba_attr_alpha_grad,
)
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.methods.raw_attention import raw_attention
from attnlens.methods.rollout import _rollout_compute, rollout
from attnlens.methods.released_vim import (
    RELEASED_START,
    released_mamba_attr,
    released_raw_attention,
    released_rollout,
    released_start_layer,
)
from attnlens.methods.selective_rollout import DISTANCES, _selective_rollout_compute, selective_rollout

# what a method may need from a trace; Adapter.provides says what each fills (attnlens/models/base.py)
NEEDS = ("attention", "attention_gradients", "hidden_attention_gradients", "residual_gradients", "readout_rows")


class MethodResult(NamedTuple):
    """What one method gives for one batch.

    Attributes:
        joint: `(B, L, n, n)` joint attention (or attention) after each layer; rows are queries.
        used: `(B, L)` bool, the layers a selective method composed; None for other methods.
    """

    joint: Tensor
    used: Tensor | None


@dataclass(frozen=True)
class MethodParameter:
    """One parameter of a registered method.

    Attributes:
        name: the parameter (``threshold``, ``alpha``, ``head_fusion``, ...).
        kind: ``float``, ``int``, ``str`` or ``bool``.
        default: its default value.
        help: one line for ``--help`` and the docs.
        argument: the name an option gives it in configs and messages (``thresholds``).
        low, high: the allowed interval of a number (None: unbounded).
        high_inclusive: whether `high` itself is allowed.
        allow_inf: whether ``inf`` is allowed.
        choices: the allowed strings.
        sweep: a list of values expands the method into one variant per value.
    """

    name: str
    kind: type
    default: object
    help: str
    argument: str = ""
    low: float | None = None
    high: float | None = None
    high_inclusive: bool = True
    allow_inf: bool = False
    choices: tuple[str, ...] | None = None
    sweep: bool = False

    @property
    def option(self) -> str:
        """The config/argument name of this parameter (`argument`, else `name`)."""
        return self.argument or self.name

    def interval(self) -> str:
        """The allowed interval as text, like ``[0, 1)``."""
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}" + ("]" if self.high_inclusive or self.high is None else ")")

    def check(self, value: object) -> object:
        """The value converted to `kind` and checked; one-line errors name :attr:`option`."""
        name = self.option
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ArgumentTypeError(f"Expected `{name}` to be True or False, but got {value!r}.", name)
            return value
        if self.kind is str:
            _check_choice(value, name, self.choices or ())
            return value
        if isinstance(value, bool) or (self.kind is int and isinstance(value, float)):
            raise ArgumentTypeError(f"Expected `{name}` to be {'an integer' if self.kind is int else 'a number'}, "
                                    f"but got {value!r}.", name)
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            raise ArgumentError(f"Expected every entry of `{name}` to be a number, but got {value!r}.", name) from None
        if self.kind is float and (math.isnan(number) or (math.isinf(number) and not self.allow_inf)):
            raise ArgumentError(f"Expected every entry of `{name}` to lie in {self.interval()}, but got {value!r}.",
                                name)
        too_high = self.high is not None and (number > self.high if self.high_inclusive else number >= self.high)
        if (self.low is not None and number < self.low) or too_high:
            raise ArgumentError(f"Expected every entry of `{name}` to lie in {self.interval()}, but got {value!r}.",
                                name)
        return number


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: the registry name (``rollout``, ``selective``, ...).
        family: ``attention``, ``rollout``, ``flow`` or ``gradient``.
        summary: one line saying what it computes.
        citation: the paper, in one line.
        function: the public function holding the math.
        parameters: its parameters, swept ones in the order they appear in variant names.
        needs: what the trace must hold, among :data:`NEEDS`: ``attention`` (row-stochastic
            attention, softmax or the normalised hidden attention of Mamba), and the extras
            ``attention_gradients``, ``hidden_attention_gradients``, ``residual_gradients``,
            ``readout_rows`` (each explained at :class:`~attnlens.models.base.Adapter`).
        compute: ``compute(cache, params) -> MethodResult`` over a per-batch cache.
    """

    name: str
    family: str
    summary: str
    citation: str
    function: Callable
    parameters: tuple[MethodParameter, ...]
    needs: frozenset[str]
    compute: Callable[[MethodCache, Mapping[str, object]], MethodResult] = field(repr=False)

    @property
    def swept(self) -> tuple[MethodParameter, ...]:
        """The parameters that a list of values expands into variants."""
        return tuple(p for p in self.parameters if p.sweep)


@dataclass(frozen=True)
class MethodVariant:
    """One runnable method: a spec with every parameter fixed.

    Attributes:
        name: display name, ``spec.name`` plus the swept values as written (``selective@0.5``).
        spec: the registered method.
        params: every parameter's value; swept parameters also list their whole sweep under
            ``"<name>_sweep"`` so a cache can run all values in one pass.
    """

    name: str
    spec: MethodSpec
    params: Mapping[str, object]

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def selective(self) -> bool:
        """Whether the method reports which layers it composed."""
        return any(p.name == "threshold" for p in self.spec.parameters)

    def compute(self, cache: MethodCache) -> MethodResult:
        """This variant's `(B, L, n, n)` joint attention for the cache's batch."""
        return self.spec.compute(cache, self.params)


class MethodCache:
    """Per-batch intermediate results shared by every method of a study.

    Args:
        attentions: `(B, L, H, n, n)` or `(B, L, n, n)` row-stochastic attention (checked by the adapter).
        mask: `(B, n)` bool valid-token mask.
        extras: the trace's extras (gradients for the gradient methods, see :data:`NEEDS`).
        progress: called with the fraction of the batch done by slow methods (attention flow).
        readout: `(B,)` the explained position per example (``Trace.readout``), for methods that
            work on its row alone; None means position 0.
    """

    def __init__(self, attentions: Tensor, mask: Tensor, *, extras: Mapping[str, Tensor] | None = None,
                 progress: Callable[[float], None] | None = None, readout: Tensor | None = None) -> None:
        self.attentions = attentions
        self.mask = mask
        self.readout = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device) if readout is None else readout
        self.extras = dict(extras or {})
        self.progress = progress
        self._store: dict[tuple, object] = {}
        self.computed: dict[str, int] = {}  # how often each kind of intermediate was computed

    def _get(self, key: tuple, make: Callable[[], object]) -> object:
        if key not in self._store:
            self._store[key] = make()
            self.computed[key[0]] = self.computed.get(key[0], 0) + 1
        return self._store[key]

    def fused(self, head_fusion: str) -> Tensor:
        """`(B, L, n, n)` head-fused attention."""
        return self._get(("fused", head_fusion), lambda: _fuse_if_per_head(self.attentions, how=head_fusion))

    def source(self, head_fusion: str, alpha: float | None = None) -> Tensor:
        """The attention a propagation starts from: fused, and diffused at `alpha` unless it is None."""
        if alpha is None:
            return self.fused(head_fusion)
        return self._get(("diffusion", alpha, head_fusion),
                         lambda: network_diffusion(self.fused(head_fusion), alpha=alpha, mask=self.mask))

    def augmented(self, head_fusion: str, alpha: float | None, residual: bool) -> Tensor:
        """``norm_rows(A + I)`` of :meth:`source` (Abnar & Zuidema 2020, Eq. 1)."""
        return self._get(("augmented", head_fusion, alpha, residual),
                         lambda: _residual_attention(self.source(head_fusion, alpha), self.mask, residual=residual))

    def selective(self, head_fusion: str, alpha: float | None, residual: bool, distance: str,
                  thresholds: tuple[float, ...]) -> dict[float, MethodResult]:
        """Selective rollout at every threshold of a sweep in one pass: the batch is repeated once per
        threshold (per-example thresholds), so the L layer steps serve all of them."""

        def make() -> dict[float, MethodResult]:
            augmented = self.augmented(head_fusion, alpha, residual)
            batch = augmented.shape[0]
            values = torch.cat([torch.full((batch,), t, dtype=augmented.dtype, device=augmented.device)
                                for t in thresholds])  # filled on the device: no host-to-device copy
            result = _selective_rollout_compute(augmented.repeat(len(thresholds), 1, 1, 1),
                                                self.mask.repeat(len(thresholds), 1), values, distance)
            return {t: MethodResult(j, u) for t, j, u in zip(thresholds, result.joint.split(batch),
                                                               result.used.split(batch))}

        return self._get(("selective", head_fusion, alpha, residual, distance, thresholds), make)


_METHODS: dict[str, MethodSpec] = {}

# parameters shared by several methods
THRESHOLD = MethodParameter("threshold", float, 1.0, "selective-rollout thresholds: a layer is composed when its "
                            "distance to the last composed layer exceeds it", argument="thresholds", low=0.0,
                            allow_inf=True, sweep=True)
ALPHA = MethodParameter("alpha", float, 0.9, "network-diffusion strengths in [0, 1)", argument="alphas", low=0.0,
                        high=1.0, high_inclusive=False, sweep=True)
HEAD_FUSION = MethodParameter("head_fusion", str, "mean", "how heads are fused", choices=_HEAD_FUSIONS)
RESIDUAL = MethodParameter("residual", bool, True, "add the identity for the residual connection")
DISTANCE = MethodParameter("distance", str, "frobenius", "selective-rollout distance (frobenius_per_token divides "
                           "by √n)", choices=DISTANCES)
START_LAYER = MethodParameter("start_layer", int, 0, "first layer composed (0-based; negative counts from the end)")


def register_method(name: str, *, family: str, summary: str, citation: str, function: Callable,
                    parameters: Sequence[MethodParameter] = (), needs: Sequence[str] = ("attention",)):
    """Decorator registering ``compute(cache, params) -> MethodResult`` as method `name`.

    Raises:
        ValueError: when `name` is taken or a need is unknown.
    """
    if name in _METHODS:
        raise ValueError(f"Expected a new method name, but {name!r} is already registered.")
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"Expected `needs` to be among {', '.join(NEEDS)}, but got {', '.join(sorted(unknown))}.")

    def decorator(compute: Callable[[MethodCache, Mapping[str, object]], MethodResult]):
        _METHODS[name] = MethodSpec(name, family, summary, citation, function, tuple(parameters), frozenset(needs),
                                    compute)
        return compute

    return decorator


def list_methods(*, needs: Sequence[str] | None = None) -> list[str]:
    """Names of every registered method, in registration order.

    Args:
        needs: when given, only the methods whose needs are all in it (what a trace provides).

    Example:
        >>> list_methods()[:3]
        ['raw', 'rollout', 'selective']
    """
    if needs is None:
        return list(_METHODS)
    return [name for name, spec in _METHODS.items() if spec.needs <= set(needs)]


def get_method(name: str) -> MethodSpec:
    """The registered method `name`; an unknown name lists the valid ones.

    Raises:
        ArgumentError: naming `methods` and every registered method.
    """
    if name not in _METHODS:
        raise ArgumentError(f"Expected every entry of `methods` to be one of {', '.join(_METHODS)}, but got {name!r}.",
                            "methods")
    return _METHODS[name]


def _sweep_values(parameter: MethodParameter, values: object) -> list[tuple[str, object]]:
    """(spelling, value) pairs of a swept parameter given as a number, a string or a list of either."""
    name = parameter.option
    items = [values] if isinstance(values, (str, int, float)) and not isinstance(values, bool) else values
    if isinstance(items, str):
        items = [items]
    try:
        spelled = [str(item).strip() for item in items]  # type: ignore[union-attr]
    except TypeError:
        raise ArgumentTypeError(f"Expected `{name}` to be a number or a list of numbers, but got {values!r}.",
                                name) from None
    if not spelled or any(not text for text in spelled):
        raise ArgumentError(f"Expected `{name}` to be a comma-separated list of numbers, but got "
                            f"{','.join(spelled)!r}.", name)
    checked = [(text, parameter.check(text)) for text in spelled]
    if len({value for _, value in checked}) != len(checked):
        raise ArgumentError(f"Expected the entries of `{name}` to be distinct numbers, but got {','.join(spelled)!r}.",
                            name)
    return checked


def check_method_options(**options: object) -> dict[str, list[tuple[str, object]] | object]:
    """Check every option a study passes to its methods, whether or not a chosen method uses it.

    Args:
        options: parameter values by parameter name (``threshold=["0.5", "1"]``, ``alpha=0.9``,
            ``head_fusion="mean"``); swept parameters take one value or a list.

    Returns:
        The checked options: swept ones as (spelling, value) pairs.

    Raises:
        ArgumentError: on an unknown option or a bad value, naming the option.
    """
    known = {p.name: p for spec in _METHODS.values() for p in spec.parameters}
    checked: dict[str, object] = {}
    for name, value in options.items():
        if name not in known:
            raise ArgumentError(f"Expected `{name}` to be a method parameter ({', '.join(sorted(known))}), but it is "
                                f"not.", name)
        parameter = known[name]
        checked[name] = _sweep_values(parameter, value) if parameter.sweep else parameter.check(value)
    return checked


def expand_methods(names: Sequence[str], **options: object) -> list[MethodVariant]:
    """Expand method names into runnable variants, one per value of each swept parameter.

    Args:
        names: registered method names (:func:`list_methods`), distinct.
        options: parameter values (see :func:`check_method_options`); missing ones take the
            parameter's default.

    Returns:
        The variants, in the order of `names`, swept values in the order given.

    Raises:
        ArgumentError: on no, unknown or repeated names, or a bad option.
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ArgumentError(f"Expected `methods` to name at least one of {', '.join(_METHODS)}, but got none.",
                            "methods")
    specs = [get_method(name) for name in names]
    if len(set(names)) != len(names):
        raise ArgumentError(f"Expected the entries of `methods` to be distinct, but got {','.join(names)}.", "methods")
    checked = check_method_options(**options)
    variants: list[MethodVariant] = []
    for spec in specs:
        fixed: dict[str, object] = {}
        for parameter in spec.parameters:
            if parameter.sweep:
                continue
            fixed[parameter.name] = checked.get(parameter.name, parameter.default)
        combos: list[tuple[list[str], dict[str, object]]] = [([], dict(fixed))]
        for parameter in spec.swept:
            values = checked.get(parameter.name) or [(f"{parameter.default:g}", parameter.default)]
            sweep = tuple(value for _, value in values)
            combos = [(spelled + [text], {**params, parameter.name: value, f"{parameter.name}_sweep": sweep})
                      for spelled, params in combos for text, value in values]
        for spelled, params in combos:
            label = spec.name + ("@" + ":".join(spelled) if spelled else "")
            variants.append(MethodVariant(label, spec, params))
    return variants


def method_variant(name: str, **options: object) -> MethodVariant:
    """One variant of method `name`: the options it takes are applied (each a single value), the
    others and None values are ignored, the rest take their defaults.

    Example:
        >>> method_variant("selective", threshold=0.5, alpha=0.9).name
        'selective@0.5'
    """
    taken = {parameter.name for parameter in get_method(name).parameters}
    return expand_methods([name], **{k: v for k, v in options.items() if k in taken and v is not None})[0]


# ----------------------------------------------------------------------------------------------- methods


@register_method("raw", family="attention", summary="each layer's head-fused attention",
                 citation="Abnar & Zuidema, ACL 2020", function=raw_attention, parameters=(HEAD_FUSION,))
def _raw(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    return MethodResult(_apply_mask(cache.fused(params["head_fusion"]), cache.mask), None)


@register_method("rollout", family="rollout", summary="joint attention J_l = Â_l J_{l-1}, Â = norm_rows(A + I)",
                 citation="Abnar & Zuidema, ACL 2020", function=rollout,
                 parameters=(HEAD_FUSION, RESIDUAL, START_LAYER))
def _rollout(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    augmented = cache.augmented(params["head_fusion"], None, params["residual"])
    return MethodResult(_rollout_compute(augmented, cache.mask, _start(params, augmented)), None)


@register_method("selective", family="rollout", summary="rollout composing layer i only when ‖Â_i − Â_ref‖_F > "
                 "threshold", citation="the thesis", function=selective_rollout,
                 parameters=(THRESHOLD, HEAD_FUSION, RESIDUAL, DISTANCE))
def _selective(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    return _selective_at(cache, params, None)


@register_method("flow", family="flow", summary="max flow from each output position to each input token",
                 citation="Abnar & Zuidema, ACL 2020", function=attention_flow, parameters=(HEAD_FUSION, RESIDUAL))
def _flow(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    report = cache.progress
    progress = None if report is None else (lambda done, total: report(done / total))
    joint = attention_flow(cache.fused(params["head_fusion"]), mask=cache.mask, layer=None,
                           residual=params["residual"], progress=progress)
    return MethodResult(joint, None)


@register_method("diffusion", family="attention", summary="each layer's attention after Network Diffusion",
                 citation="the thesis; Wang et al., Nat. Commun. 2018", function=network_diffusion,
                 parameters=(ALPHA, HEAD_FUSION))
def _diffusion(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    return MethodResult(cache.source(params["head_fusion"], params["alpha"]), None)


@register_method("diffused_rollout", family="rollout", summary="rollout of the diffused attention",
                 citation="the thesis", function=rollout, parameters=(ALPHA, HEAD_FUSION, RESIDUAL, START_LAYER))
def _diffused_rollout(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    augmented = cache.augmented(params["head_fusion"], params["alpha"], params["residual"])
    return MethodResult(_rollout_compute(augmented, cache.mask, _start(params, augmented)), None)


@register_method("diffused_selective", family="rollout", summary="selective rollout of the diffused attention",
                 citation="the thesis", function=selective_rollout,
                 parameters=(ALPHA, THRESHOLD, HEAD_FUSION, RESIDUAL, DISTANCE))
def _diffused_selective(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    return _selective_at(cache, params, params["alpha"])


@register_method("gae", family="gradient", summary="rollout of heads weighted by their positive attention gradient, "
                 "R += E_h[(∇A ⊙ A)⁺] R", citation="Chefer, Gur & Wolf, ICCV 2021", function=gradient_rollout,
                 parameters=(START_LAYER,), needs=("attention", "attention_gradients"))
def _gae(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    gradients = _extra(cache, "attention_grad", "gae", "attention gradients (a softmax-attention model)")
    if cache.attentions.ndim != 5:
        raise ArgumentError("Expected per-head attention (B, L, H, n, n) for `method` 'gae', but got head-fused "
                            "attention.", "method")
    return MethodResult(_gradient_rollout_compute(cache.attentions, gradients, cache.mask,
                                                  _start(params, cache.attentions)), None)


@register_method("mamba_attr", family="gradient", summary="hidden attention, each token's column scaled by its "
                 "positive residual-stream gradient, rolled out", citation="Ali, Zimerman & Wolf, ACL 2025",
                 function=mamba_attr, parameters=(START_LAYER,), needs=("attention", "residual_gradients"))
def _mamba_attr(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    gradients = _extra(cache, "residual_grad", "mamba_attr", "residual-stream gradients (a Mamba model)")
    attn = _hidden(cache)
    return MethodResult(_mamba_attr_residual_compute(attn, gradients, cache.mask, _start(params, attn)), None)


@register_method("mamba_attr_alpha", family="gradient", summary="hidden attention weighted by its positive "
                 "gradient with respect to α, rolled out", citation="after Ali, Zimerman & Wolf, ACL 2025",
                 function=mamba_attr_alpha_grad, parameters=(START_LAYER,),
                 needs=("attention", "hidden_attention_gradients"))
def _mamba_attr_alpha(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    gradients = _extra(cache, "hidden_attention_grad", "mamba_attr_alpha", "hidden-attention gradients (a Mamba "
                       "language model)")
    attn = cache.attentions[:, :, 0] if cache.attentions.ndim == 5 else cache.attentions
    return MethodResult(_mamba_attr_compute(attn, gradients, cache.mask, _start(params, attn)), None)


RELEASED_START_LAYER = MethodParameter("start_layer", int, RELEASED_START, "first layer used (0-based; negative "
                                       "counts from the end, clipped at 0: -9 is the released 15 of 24)")


def _released(name: str, summary: str, function: Callable, needs: tuple[str, ...]):
    return register_method(name, family="released", summary=summary, citation="Ali, Zimerman & Wolf, ACL 2025 "
                           "(released code)", function=function, parameters=(RELEASED_START_LAYER,),
                           needs=("attention", *needs))


def _as_joint(rows: Tensor) -> MethodResult:
    """`(B, L, n)` class-row maps as `(B, L, n, n)` joints whose every row is the map."""
    return MethodResult(rows[:, :, None, :].expand(*rows.shape[:2], rows.shape[-1], rows.shape[-1]), None)


@_released("released_raw", "the Vim authors' raw attention: min-max scaled class rows averaged over channels and "
           "the last layers", released_raw_attention, ("readout_rows",))
def _released_raw(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    rows = _extra(cache, "readout_rows", "released_raw", "per-channel class-token rows (a Vision Mamba model)")
    return _as_joint(released_raw_attention(rows, cache.readout, start_layer=_released_start(params, rows)))


@_released("released_rollout", "the Vim authors' rollout of the signed channel-mean class row",
           released_rollout, ("readout_rows",))
def _released_rollout(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    rows = _extra(cache, "readout_rows", "released_rollout", "per-channel class-token rows (a Vision Mamba model)")
    return _as_joint(released_rollout(rows, cache.readout, start_layer=_released_start(params, rows)))


@_released("released_mamba_attr", "the Vim authors' Mamba-Attr: scaled class rows times the residual-stream "
           "gradient, rolled out", released_mamba_attr, ("readout_rows", "residual_gradients"))
def _released_mamba_attr(cache: MethodCache, params: Mapping[str, object]) -> MethodResult:
    rows = _extra(cache, "readout_rows", "released_mamba_attr", "per-channel class-token rows (a Vision Mamba "
                  "model)")
    gradients = _extra(cache, "residual_grad", "released_mamba_attr", "residual-stream gradients (a Mamba model)")
    return _as_joint(released_mamba_attr(rows, gradients, cache.readout,
                                         start_layer=_released_start(params, rows)))


def _extra(cache: MethodCache, key: str, method: str, what: str) -> Tensor:
    value = cache.extras.get(key)
    if value is None:
        raise ArgumentError(f"Expected a model whose trace holds {what} for `method` {method!r}, but the trace has "
                            f"none.", "method")
    return value


def _hidden(cache: MethodCache) -> Tensor:
    """The signed hidden attention `(B, L, n, n)` when the trace keeps it, else the attention itself."""
    hidden = cache.extras.get("hidden_attention")
    if hidden is not None:
        return hidden
    return cache.attentions[:, :, 0] if cache.attentions.ndim == 5 else cache.attentions


def _released_start(params: Mapping[str, object], rows: Tensor) -> int:
    return released_start_layer(params.get("start_layer", RELEASED_START), rows.shape[1])


def _start(params: Mapping[str, object], attn: Tensor) -> int:
    layers = attn.shape[1]
    return _check_integer(params.get("start_layer", 0), "start_layer", low=-layers, high=layers - 1) % layers


def _selective_at(cache: MethodCache, params: Mapping[str, object], alpha: float | None) -> MethodResult:
    sweep = tuple(params.get("threshold_sweep", (params["threshold"],)))
    results = cache.selective(params["head_fusion"], alpha, params["residual"], params["distance"], sweep)
    return results[params["threshold"]]


__all__ = [
    "MethodCache",
    "MethodParameter",
    "MethodResult",
    "MethodSpec",
    "MethodVariant",
    "check_method_options",
    "expand_methods",
    "get_method",
    "list_methods",
    "method_variant",
    "register_method",
]
