"""The waitroom's status arithmetic over numpy arrays: what ``estimate_wait.status_at`` tells
a waiting resident (wait, range, poll interval), for all the polls of a second at once.

The same operations in the same order as the scalar code, so the results are equal to the
last bit (``tests/waitroom/test_simulate_opening.py``; the simulation also asks the real
``status_at`` as it runs)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from waitroom.services.estimate_wait import JITTER
from waitroom.services.pace import Curve, Forecast
from waitroom.settings import WaitroomSettings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def curve_waits_s(curve: Curve, n: FloatArray) -> FloatArray:
    """``Curve.wait_s`` for many admissions at once, the same operations in the same order."""
    counts = np.asarray(curve.counts, dtype=np.float64)
    times = np.asarray(curve.times, dtype=np.float64)
    out: FloatArray = times[-1] + (n - counts[-1]) / curve.tail_per_s
    inside = n < counts[-1]
    if inside.any():
        m = n[inside]
        i = np.searchsorted(counts, m, side="right")  # bisect.bisect_right
        c0, c1, t0, t1 = counts[i - 1], counts[i], times[i - 1], times[i]
        out[inside] = t0 + (t1 - t0) * (m - c0) / (c1 - c0)
    return out


def waits_s(fc: Forecast, ahead: IntArray, with_range: bool) -> tuple[FloatArray, ...]:
    """(expected,) or (expected, low, high) seconds, as ``status_at`` computes them."""
    n: FloatArray = ahead.astype(np.float64) + 0.5
    if fc.exact:
        expected = n / fc.per_s
        return (expected, expected, expected) if with_range else (expected,)
    expected = curve_waits_s(fc.expected, n)
    if not with_range:
        return (expected,)
    low = np.minimum(expected, curve_waits_s(fc.fast, n))
    high = np.maximum(expected, curve_waits_s(fc.slow, n))
    return expected, low, high


def jittered(poll: FloatArray, rng: np.random.Generator) -> IntArray:
    """``poll_after_s`` as ``status_at`` sends it: ± JITTER, whole seconds, at least 1."""
    u = rng.uniform(1 - JITTER, 1 + JITTER, poll.shape[0])
    return np.maximum(1, np.round(poll * u)).astype(np.int64)


def poll_after_waits(expected: FloatArray, s: WaitroomSettings) -> FloatArray:
    """``estimate_wait.poll_after_wait_s`` for many waits."""
    return np.minimum(s.poll_max_s, np.maximum(s.poll_min_s, expected / s.poll_split))
