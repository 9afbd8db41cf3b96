"""Distinct perturbed inputs run once, in length-sorted batches (`attnlens.models._perturb`)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.models._perturb import chunked_by_length, distinct_rows

ROWS = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.data())
def test_distinct_rows_keep_every_input_once_sorted_by_length(ids, data):
    types = [[data.draw(st.integers(0, 1)) for _ in row] for row in ids]
    rows = {"input_ids": ids, "token_type_ids": types}
    distinct, slots = distinct_rows(rows)
    pairs = list(zip(*(distinct[key] for key in rows)))
    assert len(set(map(repr, pairs))) == len(pairs)  # no input twice
    assert sorted(map(repr, pairs)) == sorted(set(repr(p) for p in zip(ids, types)))  # every input present
    for b in range(len(ids)):  # every original row maps to its own input
        assert distinct["input_ids"][slots[b]] == ids[b] and distinct["token_type_ids"][slots[b]] == types[b]
    lengths = [len(r) for r in distinct["input_ids"]]
    assert lengths == sorted(lengths)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(1, 50), st.sampled_from([0.0, 0.1, 0.5]))
def test_length_chunks_cover_the_rows_within_the_token_and_padding_budgets(lengths, budget, padding):
    rows = {"input_ids": [[0] * n for n in sorted(lengths)]}
    slices = chunked_by_length(rows, max_tokens=budget, max_padding=padding)
    covered = [i for part in slices for i in range(len(lengths))[part]]
    assert covered == list(range(len(lengths)))
    for part in slices:
        members = rows["input_ids"][part]
        assert members  # never empty
        padded = len(members) * max(map(len, members))
        assert len(members) == 1 or padded <= budget
        assert len(members) == 1 or padded - sum(map(len, members)) <= padding * padded
    for before, after in zip(slices, slices[1:]):  # a slice ends only where the next row breaks a budget
        members = rows["input_ids"][before.start : after.start + 1]
        padded = len(members) * max(map(len, members))
        assert padded > budget or padded - sum(map(len, members)) > padding * padded


def test_text_perturb_equals_each_perturbed_input_run_alone(tmp_path):
    from attnlens.models import create_tiny_adapter

    torch.manual_seed(0)
    adapter = create_tiny_adapter("test_bert")
    texts = ["the movie was very good", "bad", "a boring plot"] * 3
    trace = adapter.trace(texts, saliency=None)
    keep = trace.mask.clone()
    keep[0, 1] = keep[3, 1] = False  # the same input twice (rows 0 and 3), others left whole or cut
    keep[2, 2:4] = False
    logits = adapter.perturb(texts, keep)
    for b, text in enumerate(texts):
        alone = adapter.perturb([text], keep[b : b + 1, : int(trace.mask[b].sum())])
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=0)
