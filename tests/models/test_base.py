"""The contract's building blocks: `Trace` defaults, the abstract `Adapter`, the one target converter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlens.models import Adapter, ExplainError, resolve_target
from attnlens.models._targets import as_indices, label_indices, target_indices
from attnlens.trace import Trace

LOGITS = torch.tensor([[0.0, 2.0, 1.0], [3.0, 1.0, 0.0]])


def test_trace_readout_defaults_to_zeros_and_grid_to_none():
    mask = torch.ones(2, 3, dtype=torch.bool)
    trace = Trace(tokens=[["a"] * 3] * 2, mask=mask, attentions=torch.zeros(2, 1, 1, 3, 3), logits=LOGITS,
                  target=torch.zeros(2, dtype=torch.long))
    assert trace.readout.tolist() == [0, 0] and trace.readout.dtype == torch.long and trace.grid is None
    given = Trace(tokens=[], mask=mask, attentions=torch.zeros(2, 1, 1, 3, 3), logits=LOGITS, target=trace.target,
                  readout=torch.tensor([2, 1]), grid=(1, 3))
    assert given.readout.tolist() == [2, 1] and given.grid == (1, 3)


def test_adapter_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Adapter()
    abstract = Adapter.__abstractmethods__
    for name in ("trace", "predict", "perturb", "layers", "label", "class_index", "count_tokens", "num_layers",
                 "num_classes", "accepts", "from_pretrained"):
        assert name in abstract


def test_resolve_target_forms():
    assert resolve_target("pred", logits=LOGITS).tolist() == [1, 0]
    assert resolve_target(None, logits=LOGITS).tolist() == [1, 0]
    assert resolve_target("gold", logits=LOGITS, labels=torch.tensor([2, 2])).tolist() == [2, 2]
    assert resolve_target(np.array([2, 1]), logits=LOGITS).tolist() == [2, 1]
    assert resolve_target(np.int32(2), logits=LOGITS).tolist() == [2, 2]
    assert resolve_target("c", logits=LOGITS, lookup="abc".index).tolist() == [2, 2]
    assert resolve_target([0, 1], logits=LOGITS).dtype == torch.long
    assert target_indices("pred", batch=2, classes=3) is None


@pytest.mark.parametrize(
    ("target", "unit", "error", "match"),
    [
        (0.5, "class", TypeError, r"Expected `target` to be class indices \(int or list of ints\), but got 0.5"),
        (np.float64(0.5), "class", TypeError, "Expected `target` to be class indices"),
        (np.bool_(True), "token", TypeError, r"an integer tensor, but got bool np.True_"),
        (np.array([0.5]), "class", TypeError, "Expected `target` to be an integer tensor of class indices"),
        ([0, 1, 2], "class", ValueError, r"Expected `target` to hold 2 class indices in \[0, 2\], but got \[0, 1, 2\]"),
        (3, "class", ValueError, r"Expected `target` to hold 2 class indices in \[0, 2\], but got \[3, 3\]"),
        (3, "token", ValueError, r"Expected `target` to hold token ids in \[0, 3\), but got 3"),
        ([0, 1, 2], "token", ValueError, r"Expected `target` to hold one token id per text \(2\), but got \(3,\)"),
        ("gold", "class", ExplainError, "Expected `labels` when `target` is 'gold', but got none"),
        ("positive", "class", ExplainError, r"Expected `target` to be 'pred', 'gold' or class indices"),
    ],
)
def test_resolve_target_rejects(target, unit, error, match):
    with pytest.raises(error, match=match):
        resolve_target(target, logits=LOGITS, unit=unit)


def test_labels():
    assert label_indices(None, 2) is None
    assert label_indices(np.array([1, 0]), 2).tolist() == [1, 0]
    with pytest.raises(ExplainError, match="Expected `labels` to have 2 entries, but got 3"):
        label_indices([1, 0, 1], 2)
    with pytest.raises(TypeError, match="Expected `labels` to be class indices"):
        label_indices(["x"], 1)
    assert as_indices(torch.tensor([[1], [2]]), "target").tolist() == [1, 2]


def test_public_names_are_sorted_unique_and_importable():
    import attnlens.models as models

    names = models.__all__
    assert len(names) == len(set(names)) and "Adapter" in names
    constants = [n for n in names if n.isupper()]
    classes = [n for n in names if n[0].isupper() and not n.isupper()]
    functions = [n for n in names if n[0].islower()]
    assert names == sorted(constants) + sorted(classes) + sorted(functions)  # isort-style, as ruff's RUF022
    assert all(hasattr(models, n) for n in names)
