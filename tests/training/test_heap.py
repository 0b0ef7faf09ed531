"""Heap retention: freed blocks stay mapped inside the block, are returned after it, and no number changes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hybridmat.training.heap import heap_retention_available
from hybridmat.training.trainer import TrainConfig, train_model
from tests.training.tiny_model import rocksalt_dataset, split, tiny_model

pytestmark = pytest.mark.skipif(not heap_retention_available(), reason="glibc only")
BLOCK_MIB = 96
#: Run in a fresh interpreter: what glibc does with a freed block depends on the heap's history, which a test
#: session's earlier tests (and their trainers) have already shaped.
PROBE = f"""
import os, torch
from hybridmat.training.heap import retained_heap

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def growth_after_free():  # resident MiB left behind by allocating, touching and freeing one large tensor
    before = resident()
    block = torch.ones({BLOCK_MIB} * 2**18)
    del block
    return resident() - before

def nested():
    with retained_heap():
        with retained_heap():
            pass
        return growth_after_free()

with retained_heap():
    inside = growth_after_free()
after = growth_after_free()
still_inside = nested()
with retained_heap(enabled=False):
    disabled = growth_after_free()
print(inside, after, still_inside, disabled)
"""


def _probe() -> list[float]:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return [float(value) for value in result.stdout.split()]


def test_freed_large_blocks_stay_in_the_process_only_inside_the_block() -> None:
    inside, after, still_inside, disabled = _probe()
    assert inside > BLOCK_MIB / 2  # kept for the next step to reuse
    assert after < BLOCK_MIB / 2  # glibc's defaults are back: returned on free
    assert still_inside > BLOCK_MIB / 2  # an inner block's end does not restore the defaults
    assert disabled < BLOCK_MIB / 2


def test_training_with_a_retained_heap_gives_identical_weights() -> None:
    train, val = split(rocksalt_dataset(60), 20)
    weights = []
    for retain in (False, True):
        result = train_model(tiny_model(), train, val, TrainConfig(epochs=2, batch_size=8, device="cpu",
                                                                   retain_heap=retain))
        weights.append(result.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
