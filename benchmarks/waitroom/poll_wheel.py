"""Residents by the second of their next poll (the simulation's event queue)."""

from __future__ import annotations

import numpy as np

from benchmarks.waitroom.vector_status import IntArray

# The wheel's span in seconds: longer than any poll interval (poll_max_s × 1.1), and a
# power of two.
WHEEL_S = 512


class Wheel:
    """Residents by the second of their next poll: a ring of WHEEL_S seconds, each second a
    row of one buffer, filled without a Python loop over the distinct intervals."""

    def __init__(self, width: int = 4096) -> None:
        self.rows = np.zeros((WHEEL_S, width), np.int32)
        self.fill = np.zeros(WHEEL_S, np.int64)
        self.row_starts = np.arange(WHEEL_S) * width  # the flat index of each row's start
        self.now = -1  # the last second popped

    def add(self, ids: IntArray, due: IntArray) -> None:
        """Residents ``ids`` poll at ``due`` (each after the last second popped, within
        WHEEL_S of it)."""
        k = ids.shape[0]
        if k == 0:
            return
        if int(due.max()) - self.now >= WHEEL_S:
            raise ValueError("a poll beyond the wheel's span")
        row = (due & (WHEEL_S - 1)).astype(np.int16)
        counts = np.bincount(row, minlength=WHEEL_S)
        fill = self.fill + counts
        need = int(fill.max())
        if need > self.rows.shape[1]:
            width = self.rows.shape[1]
            wider = np.zeros((WHEEL_S, max(need, 2 * width)), np.int32)
            wider[:, :width] = self.rows
            self.rows = wider
            self.row_starts = np.arange(WHEEL_S) * wider.shape[1]
        # Sorted by row, the k-th resident of a row goes to column fill[row] + k.
        order = np.argsort(row, kind="stable")  # 16-bit keys: a radix sort
        start = self.row_starts + fill - np.cumsum(counts)
        self.rows.reshape(-1)[np.repeat(start, counts) + np.arange(k)] = ids[order]
        self.fill = fill

    def pop(self, second: int) -> IntArray:
        """The residents who poll at ``second``; seconds are popped one after another."""
        self.now = second
        row = second & (WHEEL_S - 1)
        n = int(self.fill[row])
        self.fill[row] = 0
        return self.rows[row, :n].astype(np.int64)
