"""The serving process's collector settings (process-global: restored afterwards)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from machiai.gc_tuning import tune_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_program_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    tune_gc_for_serving(12_345)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (12_345, before[1], before[2])


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_after_tuning_are_still_collected() -> None:
    tune_gc_for_serving()

    class Node:
        def __init__(self) -> None:
            self.me = self

    probe = weakref.ref(Node())
    assert probe() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert probe() is None
