"""Batches as trees: rows, a subset of rows, chunks and devices, whatever the nesting; non-tensor leaves pass."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest
import torch

from gradtune import UsageError
from gradtune.batches import leading_size, map_tensors, split_rows, take_rows, tensor_leaves, to_device

Pair = namedtuple("Pair", "ids mask")


def tree(n: int = 10):
    return {"inputs": (torch.arange(n * 3).view(n, 3), Pair(torch.arange(n), torch.ones(n, 2))),
            "labels": torch.arange(n) % 2, "source": "train", "scale": torch.tensor(2.0)}


def test_leading_size_ignores_non_tensors_and_scalars():
    assert leading_size(tree(10)) == 10
    assert leading_size([torch.zeros(4, 2), "x", 3]) == 4


def test_leaves_of_different_leading_sizes_are_one_line_usage_errors():
    with pytest.raises(UsageError) as error:
        leading_size((torch.zeros(4, 2), {"y": torch.zeros(5)}))
    assert "different leading sizes" in str(error.value) and "[4, 5]" in str(error.value)
    assert "\n" not in str(error.value)


def test_take_rows_indexes_every_leaf_and_keeps_the_shape_of_the_tree():
    batch = tree(10)
    index = torch.tensor([7, 2, 2])
    taken = take_rows(batch, index)
    assert isinstance(taken["inputs"][1], Pair) and isinstance(taken["inputs"], tuple)
    assert torch.equal(taken["inputs"][0], batch["inputs"][0][index])
    assert torch.equal(taken["inputs"][1].ids, torch.tensor([7, 2, 2]))
    assert torch.equal(taken["labels"], batch["labels"][index])
    assert taken["source"] == "train" and taken["scale"] is batch["scale"]


def test_split_rows_gives_views_that_cover_the_batch_in_order():
    batch = tree(10)
    chunks = split_rows(batch, 4)
    assert [leading_size(c) for c in chunks] == [4, 4, 2]
    joined = torch.cat([c["inputs"][0] for c in chunks])
    assert torch.equal(joined, batch["inputs"][0])
    assert chunks[1]["inputs"][0].data_ptr() == batch["inputs"][0][4:].data_ptr()  # no copy


def test_to_device_and_map_keep_mapping_types():
    batch = OrderedDict(x=torch.zeros(3, dtype=torch.float64), note=["a", "b", "c"])
    moved = to_device(batch, "cpu")
    assert isinstance(moved, OrderedDict) and moved["note"] == ["a", "b", "c"]
    halved = map_tensors(lambda t: t.float(), batch)
    assert halved["x"].dtype == torch.float32
    assert len(list(tensor_leaves(tree()))) == 5
