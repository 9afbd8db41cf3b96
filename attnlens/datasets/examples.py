"""`Example` and `Examples`: the immutable, id-keyed inputs every study scores.

An `Examples` is a sequence of `Example` records in source order. Each record carries a stable
`id` (the key of a `ScoreTable` row, so shards and resumed runs merge by it) and its 0-based
`index` in the source (the study sorts by it, so merged shards come out in a fixed order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from attnlens._checks import _check_integer


@dataclass(frozen=True, slots=True)
class Example:
    """One input: a text (or an image path) with its optional gold label.

    Args:
        id: stable identifier, unique within its `Examples`.
        index: 0-based position in the source order.
        text: the text, or None for an image example.
        label: the gold class index (``>= 0``), or None when the source has no labels.
        image: path of the image, or None for a text example.
    """

    id: str
    index: int
    text: str | None
    label: int | None
    image: str | None = None


def _id_prefix(name: str) -> str:
    """The prefix of derived ids: the name with its slashes turned into dashes ("sst2/dev" -> "sst2-dev")."""
    return name.strip("/").replace("/", "-")


@dataclass(frozen=True, repr=False)
class Examples(Sequence[Example]):
    """An immutable sequence of `Example`, with the name and source it came from.

    Labels are all present or all absent: `labels` is a list of class indices, or None for a
    source without labels (then only targets other than the gold label can be explained, and no
    accuracy is reported). `class_names` names the class indices when they are known (string
    labels, sorted; or a preset such as SST-2's); it is None for plain integer labels.

    Args:
        examples: the records, in source order; ids must be unique.
        name: short name for messages and results, e.g. ``"sst2/dev"``.
        source: where the records came from (a path or ``hf:<dataset>[<split>]``).
        class_names: names of the class indices, or None.

    Raises:
        ValueError: for duplicate ids, a mix of labelled and unlabelled records, a negative label,
            or a label without a class name.
        TypeError: for a record that is not an `Example`.

    Example:
        >>> data = Examples.from_texts(["good film", "bad film", "fine"], [1, 0, 1], name="toy")
        >>> len(data), data.ids[0], data.labels, data.num_classes
        (3, 'toy-0', [1, 0, 1], 2)
        >>> data[1].text
        'bad film'
        >>> data[1:].ids
        ['toy-1', 'toy-2']
    """

    examples: tuple[Example, ...]
    name: str
    source: str
    class_names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        items = tuple(self.examples)
        for item in items:
            if not isinstance(item, Example):
                raise TypeError(f"Expected `examples` to hold Example records, but got {type(item).__name__}.")
        names = None if self.class_names is None else tuple(str(c) for c in self.class_names)
        object.__setattr__(self, "examples", items)
        object.__setattr__(self, "class_names", names)
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"Expected unique ids in `examples` {self.name}, but {item.id!r} appears twice.")
            seen.add(item.id)
        labelled = sum(item.label is not None for item in items)
        if 0 < labelled < len(items):
            raise ValueError(f"Expected every example of {self.name} to have a label or none to, but "
                             f"{len(items) - labelled} of {len(items)} have none.")
        for item in items:
            if item.label is None:
                continue
            if isinstance(item.label, bool) or not isinstance(item.label, int) or item.label < 0:
                raise ValueError(f"Expected the label of example {item.id!r} to be an integer >= 0, but got "
                                 f"{item.label!r}.")
            if names is not None and item.label >= len(names):
                raise ValueError(f"Expected the label of example {item.id!r} to be below the {len(names)} class "
                                 f"names, but got {item.label}.")

    @classmethod
    def from_texts(cls, texts: Iterable[str], labels: Iterable[int] | None = None, *, name: str = "examples",
                   source: str = "memory", class_names: Sequence[str] | None = None) -> Examples:
        """Build examples from parallel lists; ids are ``f"{name}-{index}"`` with slashes in `name` as dashes.

        Example:
            >>> Examples.from_texts(["a", "b"], name="sst2/dev").ids
            ['sst2-dev-0', 'sst2-dev-1']
        """
        texts = list(texts)
        label_list = [None] * len(texts) if labels is None else list(labels)
        if len(label_list) != len(texts):
            raise ValueError(f"Expected `labels` to have one label per text ({len(texts)}), but got "
                             f"{len(label_list)}.")
        prefix = _id_prefix(name)
        records = tuple(Example(id=f"{prefix}-{i}", index=i, text=text, label=label)
                        for i, (text, label) in enumerate(zip(texts, label_list)))
        return cls(records, name=name, source=source,
                   class_names=None if class_names is None else tuple(class_names))

    def __len__(self) -> int:
        return len(self.examples)

    @overload
    def __getitem__(self, key: int) -> Example: ...

    @overload
    def __getitem__(self, key: slice) -> Examples: ...

    def __getitem__(self, key: int | slice) -> Example | Examples:
        if isinstance(key, slice):
            return Examples(self.examples[key], name=self.name, source=self.source, class_names=self.class_names)
        if isinstance(key, bool):
            raise TypeError("Expected an int or a slice as index into `Examples`, but got bool.")
        try:
            return self.examples[key]
        except TypeError:
            raise TypeError(f"Expected an int or a slice as index into `Examples`, but got "
                            f"{type(key).__name__}.") from None

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __repr__(self) -> str:
        return f"Examples(name={self.name!r}, {len(self)} examples, source={self.source!r})"

    @property
    def ids(self) -> list[str]:
        """The ids, in order."""
        return [item.id for item in self.examples]

    @property
    def indices(self) -> list[int]:
        """The 0-based source positions, in order."""
        return [item.index for item in self.examples]

    @property
    def texts(self) -> list[str]:
        """The texts, in order.

        Raises:
            ValueError: if some example has no text (an image example).
        """
        missing = next((item for item in self.examples if item.text is None), None)
        if missing is not None:
            raise ValueError(f"Expected every example of {self.name} to have a text, but {missing.id!r} has none.")
        return [item.text for item in self.examples]  # type: ignore[misc]

    @property
    def has_labels(self) -> bool:
        """Whether the examples carry gold labels (an empty `Examples` has none)."""
        return bool(self.examples) and self.examples[0].label is not None

    @property
    def labels(self) -> list[int] | None:
        """The gold class indices, in order, or None when the source has no labels."""
        if not self.has_labels:
            return None
        return [item.label for item in self.examples]  # type: ignore[misc]

    @property
    def num_classes(self) -> int | None:
        """The number of class names when known, else the largest label + 1, else None (no labels)."""
        if self.class_names is not None:
            return len(self.class_names)
        labels = self.labels
        return None if labels is None else max(labels) + 1

    def head(self, n: int) -> Examples:
        """The first `n` examples (all of them when there are fewer).

        Raises:
            ValueError: if `n` is not a positive integer.

        Example:
            >>> Examples.from_texts(["a", "b", "c"]).head(2).texts
            ['a', 'b']
        """
        n = _check_integer(n, "n", low=1)
        return self[:n]

    def select(self, indices: Iterable[int]) -> Examples:
        """The examples at the given positions of this sequence (0-based, not the source `index`), in that order.

        Raises:
            ValueError: for a position out of range or repeated.

        Example:
            >>> Examples.from_texts(["a", "b", "c"]).select([2, 0]).ids
            ['examples-2', 'examples-0']
        """
        positions = [_check_integer(i, "indices", low=0) for i in indices]
        bad = next((i for i in positions if i >= len(self)), None)
        if bad is not None:
            raise ValueError(f"Expected `indices` to hold positions in [0, {len(self) - 1}], but got {bad}.")
        if len(set(positions)) != len(positions):
            repeated = next(i for i in positions if positions.count(i) > 1)
            raise ValueError(f"Expected `indices` to hold each position once, but {repeated} repeats.")
        return Examples(tuple(self.examples[i] for i in positions), name=self.name, source=self.source,
                        class_names=self.class_names)
