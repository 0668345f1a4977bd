"""Is a difference in a table real? Chance level, the test set's standard error, and paired bootstrap intervals.

A table of mean +- std over 3 seeds hides two facts users need: how many test clips stand behind each number (one
clip of 103 is one point of accuracy) and whether two methods differ by more than that noise. Two tools:

- `binomial_se(p, n)`: the standard error of one accuracy measured on n test clips, sqrt(p (1 - p) / n).
- `paired_bootstrap(a, b)`: a, b are (seeds, test clips) 0/1 correctness matrices of two methods trained with the
  same seeds and tested on the same clips. Each resample draws test clips with replacement (the same clips for both
  methods: the pairing removes the shared clip difficulty) and seeds with replacement (the same seed index for
  both), and takes the difference of mean accuracies. The 2.5 / 97.5 percentiles give a 95 % interval; an interval
  that excludes 0 says the ordering would likely hold on another test set drawn like this one and other seeds.
  Under `compressa evaluate --folds K` the clips are every clip of the pooled splits (each tested once per seed by
  the network of its fold), which narrows the interval by about sqrt(pooled / test clips).
  numpy is enough here (scipy.stats.bootstrap resamples one axis of paired samples, not clips and seeds jointly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent test clips."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


def chance_levels(test_labels, num_classes: int) -> dict[str, float]:
    """Accuracy of guessing: uniformly at random (1 / classes) and always the test set's most common class."""
    counts = np.bincount(np.asarray(test_labels, dtype=np.int64), minlength=num_classes)
    return {"uniform": 1.0 / num_classes, "majority": float(counts.max() / max(counts.sum(), 1))}


@dataclass
class PairedDifference:
    """Mean accuracy of A minus B (0-1 scale) and its bootstrap interval."""

    diff: float
    low: float
    high: float
    level: float
    resamples: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no clear difference"

    def to_dict(self) -> dict:
        return {
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
            "verdict": self.verdict,
        }


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> PairedDifference:
    """Bootstrap interval of mean(a) - mean(b) over (seeds, test clips) correctness matrices.

    Rows are seeds, paired by position (row i of both was trained with seed i); columns are the same test clips.
    With different seed counts, only the first min(rows) seeds are paired.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (seeds, clips) over the same clips, got {a.shape} and {b.shape}")
    s = min(len(a), len(b))
    if s == 0 or a.shape[1] == 0:
        raise ValueError("paired_bootstrap needs at least one seed and one test clip on each side")
    a, b = a[:s], b[:s]
    d = a - b  # paired per (seed, clip)
    rng = np.random.default_rng(seed)
    n = d.shape[1]
    stats = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, s, size=s)
        cols = rng.integers(0, n, size=n)
        stats[i] = d[np.ix_(rows, cols)].mean()
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return PairedDifference(float(d.mean()), float(low), float(high), level, resamples)
