"""`ScoreTable`: every example's score per method and layer, mergeable across shards.

A table is the mergeable state of a study, as a torchmetrics metric's ``"cat"`` state: rows are
(example, method, layer), keyed by the example's stable id; tables of disjoint shards concatenate
in any order (:meth:`ScoreTable.concat`) and are put back into source order by the examples'
``index``, so a merged table summarises to exactly the numbers of an unsharded run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

METRICS = ("spearman", "entropy", "gini")


@dataclass
class ScoreTable:
    """Per-example scores of every method at every layer.

    Attributes:
        methods: the method variants' names, in study order (M).
        families: method name → registry family.
        num_layers: L.
        ids: `(N,)` stable example ids.
        index: `(N,)` int64 position of each example in its source (the sort key of merges).
        texts: `(N,)` the examples' texts.
        labels: `(N,)` int64 gold labels, -1 where unknown.
        predictions: `(N,)` int64 predicted classes.
        tokens: `(N,)` int64 token counts (after truncation).
        scores: metric name (``spearman`` against the reference, ``entropy``, ``gini``) →
            `(N, M, L)` float64, NaN where undefined (a constant map).
        layers_used: `(N, M)` float64 layers composed by selective methods, NaN for the others.
        meta: what produced the table (model, data, reference, options); tables merge only when
            their `meta` agree.
        timings: seconds spent per stage.
    """

    methods: list[str]
    families: dict[str, str]
    num_layers: int
    ids: list[str]
    index: np.ndarray
    texts: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    tokens: np.ndarray
    scores: dict[str, np.ndarray]
    layers_used: np.ndarray
    meta: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of rows: examples × methods × layers."""
        return len(self.ids) * len(self.methods) * self.num_layers

    @property
    def num_examples(self) -> int:
        return len(self.ids)

    def metric(self, name: str, method: str) -> np.ndarray:
        """`(N, L)` values of one metric for one method."""
        return self.scores[name][:, self.methods.index(method)]

    def rows(self) -> Iterator[tuple[str, str, int, float, float, float]]:
        """The long format: ``(example id, method, layer (1-based), spearman, entropy, gini)``."""
        for e, example in enumerate(self.ids):
            for m, method in enumerate(self.methods):
                for layer in range(self.num_layers):
                    yield (example, method, layer + 1, *(float(self.scores[k][e, m, layer]) for k in METRICS))

    def sorted(self) -> ScoreTable:
        """The same table with examples in source order (by `index`, then id)."""
        order = sorted(range(len(self.ids)), key=lambda i: (int(self.index[i]), self.ids[i]))
        return self.select(np.asarray(order, dtype=np.int64))

    def select(self, order: np.ndarray) -> ScoreTable:
        """The examples at positions `order` (in that order)."""
        return ScoreTable(
            methods=list(self.methods), families=dict(self.families), num_layers=self.num_layers,
            ids=[self.ids[i] for i in order], index=self.index[order], texts=[self.texts[i] for i in order],
            labels=self.labels[order], predictions=self.predictions[order], tokens=self.tokens[order],
            scores={k: v[order] for k, v in self.scores.items()}, layers_used=self.layers_used[order],
            meta=dict(self.meta), timings=dict(self.timings))

    @staticmethod
    def concat(tables: Sequence[ScoreTable]) -> ScoreTable:
        """Merge tables of disjoint shards (in any order) into one, in source order.

        Raises:
            ValueError: on no tables, tables of different methods, layers or `meta` (naming the
                field), or an example id present in two tables.
        """
        if not tables:
            raise ValueError("Expected at least one ScoreTable to merge, but got none.")
        first = tables[0]
        for other in tables[1:]:
            for name in ("methods", "num_layers", "meta"):
                if getattr(other, name) != getattr(first, name):
                    raise ValueError(f"Expected every ScoreTable to have the same `{name}`, but got "
                                     f"{getattr(first, name)!r} and {getattr(other, name)!r}.")
        ids = [i for t in tables for i in t.ids]
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            repeated = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"Expected the shards to hold distinct examples, but example {repeated!r} appears twice.")
        timings: dict[str, float] = {}
        for table in tables:
            for key, value in table.timings.items():
                timings[key] = timings.get(key, 0.0) + value
        merged = ScoreTable(
            methods=list(first.methods), families=dict(first.families), num_layers=first.num_layers, ids=ids,
            index=np.concatenate([t.index for t in tables]), texts=[x for t in tables for x in t.texts],
            labels=np.concatenate([t.labels for t in tables]),
            predictions=np.concatenate([t.predictions for t in tables]),
            tokens=np.concatenate([t.tokens for t in tables]),
            scores={k: np.concatenate([t.scores[k] for t in tables]) for k in first.scores},
            layers_used=np.concatenate([t.layers_used for t in tables]), meta=dict(first.meta), timings=timings)
        return merged.sorted()


__all__ = ["METRICS", "ScoreTable"]
