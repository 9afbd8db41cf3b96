"""`Example`/`Examples`: immutability, indexing, slicing, head, select and their checks."""

from __future__ import annotations

import dataclasses

import pytest

from attnlens.datasets import Example, Examples


@pytest.fixture
def five() -> Examples:
    return Examples.from_texts([f"text {i}" for i in range(5)], [0, 1, 2, 1, 0], name="toy/dev", source="memory")


def test_properties(five):
    assert len(five) == 5
    assert five.ids == [f"toy-dev-{i}" for i in range(5)]
    assert five.indices == list(range(5))
    assert five.texts[2] == "text 2"
    assert five.labels == [0, 1, 2, 1, 0]
    assert five.num_classes == 3
    assert five.class_names is None
    assert five.has_labels
    assert five.name == "toy/dev" and five.source == "memory"
    assert "5 examples" in repr(five)


def test_indexing_and_slicing(five):
    assert five[0] == Example(id="toy-dev-0", index=0, text="text 0", label=0)
    assert five[-1].index == 4
    part = five[1:4]
    assert isinstance(part, Examples)
    assert part.ids == ["toy-dev-1", "toy-dev-2", "toy-dev-3"]
    assert part.indices == [1, 2, 3]  # source positions survive slicing
    assert part.name == five.name and part.source == five.source
    assert five[::2].labels == [0, 2, 0]
    assert list(five)[3] == five[3]
    assert five[1] in five
    with pytest.raises(IndexError):
        five[5]
    with pytest.raises(TypeError, match="Expected an int or a slice as index into `Examples`, but got str"):
        five["a"]
    with pytest.raises(TypeError, match="but got bool"):
        five[True]


def test_head_and_select(five):
    assert five.head(2).ids == ["toy-dev-0", "toy-dev-1"]
    assert len(five.head(99)) == 5
    assert five.select([4, 0, 2]).indices == [4, 0, 2]
    assert len(five.select([])) == 0
    with pytest.raises(ValueError, match=r"Expected `n` to be an integer in \[1, inf\], but got 0"):
        five.head(0)
    with pytest.raises(TypeError, match="Expected `n` to be an integer, but got float"):
        five.head(1.5)
    with pytest.raises(ValueError, match=r"Expected `indices` to hold positions in \[0, 4\], but got 5"):
        five.select([5])
    with pytest.raises(ValueError, match=r"Expected `indices` to be an integer in \[0, inf\], but got -1"):
        five.select([-1])
    with pytest.raises(ValueError, match="Expected `indices` to hold each position once, but 1 repeats"):
        five.select([1, 1])


def test_immutable(five):
    with pytest.raises(dataclasses.FrozenInstanceError):
        five.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        five[0].text = "changed"  # type: ignore[misc]
    assert isinstance(five.examples, tuple)
    assert five.texts is not five.texts  # fresh lists: mutating one never changes the examples
    five.texts.append("x")
    assert len(five.texts) == 5


def test_unlabelled_and_class_names():
    plain = Examples.from_texts(["a", "b"])
    assert plain.labels is None and not plain.has_labels and plain.num_classes is None
    named = Examples.from_texts(["a", "b"], [0, 0], class_names=["neg", "pos"])
    assert named.num_classes == 2 and named.class_names == ("neg", "pos")
    empty = Examples((), name="empty", source="memory")
    assert len(empty) == 0 and empty.labels is None and empty.ids == []


def test_image_examples_have_no_texts():
    images = Examples((Example(id="cat", index=0, text=None, label=3, image="cat.jpg"),), name="img", source="x")
    assert images[0].image == "cat.jpg" and images.labels == [3]
    with pytest.raises(ValueError, match="Expected every example of img to have a text, but 'cat' has none"):
        images.texts


def test_checks():
    one = Example(id="a", index=0, text="x", label=0)
    with pytest.raises(ValueError, match="Expected unique ids in `examples` d, but 'a' appears twice"):
        Examples((one, one), name="d", source="x")
    with pytest.raises(ValueError, match="Expected every example of d to have a label or none to, but 1 of 2"):
        Examples((one, Example(id="b", index=1, text="y", label=None)), name="d", source="x")
    with pytest.raises(ValueError, match="Expected the label of example 'a' to be an integer >= 0, but got -1"):
        Examples((Example(id="a", index=0, text="x", label=-1),), name="d", source="x")
    with pytest.raises(ValueError, match="Expected the label of example 'a' to be below the 1 class names, but got 1"):
        Examples((Example(id="a", index=0, text="x", label=1),), name="d", source="x", class_names=("only",))
    with pytest.raises(TypeError, match="Expected `examples` to hold Example records, but got str"):
        Examples(("a",), name="d", source="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected `labels` to have one label per text \(2\), but got 1"):
        Examples.from_texts(["a", "b"], [0])
