"""Which clips train and which are held out: stratified k folds and a stratified validation carve.

`compressa evaluate` tests on the source's test split by default. Two other protocols split clips here instead:

- `stratified_folds(labels, k, seed)`: k-fold cross-validation over a pool of clips (the train and test splits
  together). Every clip is in exactly one fold, so a network trained on the other k - 1 folds tests it exactly once
  per seed, and the paired bootstrap of `compressa_hf.evaluation.stats` runs over every pooled clip rather than the
  test split alone (arid6_iid: 258 clips instead of 103). Each class is dealt round-robin over the folds after a
  seeded shuffle, so its count per fold differs by at most 1 between folds, as does each fold's size (the deal goes
  on where the previous class stopped). Folds are only honest when the pooled clips are exchangeable: a *random*
  split such as arid6_iid (its scenes appear in both train and test already) is one, and folds there just use more
  clips; a split made scene- or subject-disjoint on purpose (UCF101's groups, HMDB51's official splits) is not,
  because pooling puts clips of one scene on both sides of a fold and inflates accuracy. Keep the official split
  there (scikit-learn's `GroupKFold` is the tool for grouped folds).
- `validation_split(labels, fraction, seed, groups=None)`: a stratified, seeded fraction of the training split held
  out, for choosing settings (epochs, method options, a sweep) without ever looking at the test clips. With `groups`
  (`clip_groups`: UCF101's `gGG`, the same actor and scene) whole groups are held out, so a validation clip never
  shares its scene with a training clip: the discipline of a group-disjoint test split, kept inside the carve.

Pure numpy, no I/O: labels in, sorted positions out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

#: UCF101's clip names, `v_<Class>_g<GG>_c<CC>`: the group `GG` is one actor and scene (THUMOS/UCF101 readme).
UCF101_GROUP = r"^v_.+_g(\d+)_c\d+$"


def _class_members(labels, num_classes: int | None, class_names: Sequence[str] | None, what: str):
    """`(labels as int64 (N,), list of each class's positions)`; raises on a bad label array."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what}: labels must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ValueError(f"{what}: labels must be non-negative integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else (int(labels.max()) + 1 if labels.size else 0)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"{what}: label {int(labels.max())} is not below num_classes={num_classes}")
    return labels, [np.flatnonzero(labels == c) for c in range(num_classes)]


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return f"{class_names[c]!r} (label {c})" if class_names is not None else f"label {c}"


def stratified_folds(
    labels, num_folds: int, seed: int = 0, num_classes: int | None = None, class_names: Sequence[str] | None = None
) -> np.ndarray:
    """The fold of every clip: int64 `(N,)` with values in `[0, num_folds)`.

    Args:
        labels: `(N,)` class indices (numpy array, list or CPU tensor).
        num_folds: k >= 2.
        seed: Seeds the shuffle within each class; the same (labels, k, seed) always give the same folds.
        num_classes: Classes that must be present (default: `len(class_names)`, else max label + 1).
        class_names: Names for error messages, in label order.

    Each class's clips are shuffled and dealt round-robin over the folds, continuing from the fold where the previous
    class stopped: per class, counts differ by at most 1 between folds, and so do the folds' sizes.

    Raises:
        ValueError: k < 2, bad labels, or a class with fewer clips than folds (some fold would not test it; a class
            absent from the pool counts as 0 clips).
    """
    if num_folds < 2:
        raise ValueError(f"k-fold cross-validation needs at least 2 folds, got {num_folds}")
    labels, members = _class_members(labels, num_classes, class_names, "stratified_folds")
    small = [f"{_class_name(c, class_names)}: {len(m)}" for c, m in enumerate(members) if len(m) < num_folds]
    if small:
        raise ValueError(
            f"{len(small)} class(es) have fewer clips than --folds {num_folds} ({', '.join(small[:10])}"
            f"{' ...' if len(small) > 10 else ''}); every fold must test every class: pass fewer folds"
        )
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    start = 0
    for m in members:
        folds[rng.permutation(m)] = (start + np.arange(len(m))) % num_folds
        start = (start + len(m)) % num_folds
    return folds


def fold_split(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, test)`: sorted int64 positions of the clips outside and inside `fold` of a `stratified_folds` result."""
    folds = np.asarray(folds)
    if not 0 <= fold <= int(folds.max(initial=-1)):
        raise ValueError(f"fold {fold} is not one of the folds 0..{int(folds.max(initial=-1))}")
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def clip_groups(clip_ids: Sequence[str], pattern: str) -> list[str] | None:
    """The group of every clip, for a group-disjoint validation carve, or None for none.

    Args:
        clip_ids: `(N,)` clip ids (a source's `clip_id`, e.g. `train/Archery/v_Archery_g03_c02`); the pattern is
            matched against the last path component without its extension.
        pattern: `auto` (UCF101's `UCF101_GROUP` when every clip name matches it, else None), `none` (None), or a
            regular expression whose first capture group (else whole match) names a clip's group within its class.

    Raises:
        ValueError: a bad regular expression, or (for an explicit pattern) a clip name it does not match, named.
    """
    if pattern == "none":
        return None
    names = [os.path.splitext(os.path.basename(str(c)))[0] for c in clip_ids]
    if pattern == "auto":
        regex = re.compile(UCF101_GROUP)
        if not names or not all(regex.match(n) for n in names):
            return None
    else:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"validation groups: {pattern!r} is not a regular expression ({e})") from None
    groups = []
    for name in names:
        m = regex.search(name)
        if m is None:
            raise ValueError(
                f"validation groups: clip {name!r} does not match {pattern!r}; every clip needs a group "
                "(or pass `none` for a clip-level carve)"
            )
        groups.append(m.group(1) if m.groups() else m.group(0))
    return groups


def validation_split(
    labels,
    fraction: float,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(train, held_out)`: sorted int64 positions, a stratified seeded `fraction` of each class held out.

    Args:
        labels: `(N,)` class indices of the training split.
        fraction: Share held out, in (0, 1).
        seed: Seeds which clips (or groups) of each class are held out.
        num_classes / class_names: As in `stratified_folds`.
        groups: `(N,)` group names (`clip_groups`), or None. A group is a group within its class (UCF101 numbers its
            groups per class).

    Without groups each class holds out `round(fraction * n_c)` clips, at least 1 and at most n_c - 1 (a class must
    both train and be validated), so every class's share is within half a clip of `fraction`, bar that clamp. With
    groups each class holds out whole groups, in seeded order, until it holds at least that many clips, keeping at
    least one group to train on: no group is on both sides, and a class's share can exceed `fraction` by up to one
    group.

    Raises:
        ValueError: fraction outside (0, 1), bad labels, a class with fewer than 2 clips, `groups` of the wrong
            length, or (with groups) a class with a single group, named.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    labels, members = _class_members(labels, num_classes, class_names, "validation_split")
    small = [f"{_class_name(c, class_names)}: {len(m)}" for c, m in enumerate(members) if len(m) < 2]
    if small:
        raise ValueError(
            f"{len(small)} class(es) have fewer than 2 training clips ({', '.join(small[:10])}"
            f"{' ...' if len(small) > 10 else ''}); a validation carve needs one to train and one to hold out per class"
        )
    if groups is not None:
        if len(groups) != len(labels):
            raise ValueError(f"validation_split: {len(groups)} groups for {len(labels)} clips")
        single = [_class_name(c, class_names) for c, m in enumerate(members) if len({groups[i] for i in m}) < 2]
        if single:
            raise ValueError(
                f"{len(single)} class(es) have a single group in the training split ({', '.join(single[:10])}"
                f"{' ...' if len(single) > 10 else ''}); a group-disjoint validation carve needs two per class "
                "(or pass `none` for a clip-level carve)"
            )
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for m in members:
        n = min(max(int(np.floor(fraction * len(m) + 0.5)), 1), len(m) - 1)
        if groups is None:
            held[rng.choice(m, size=n, replace=False)] = True
            continue
        names = sorted({groups[i] for i in m})
        order = [names[j] for j in rng.permutation(len(names))]
        for g in order[:-1]:  # the last group always trains
            if sum(held[m]) >= n:
                break
            held[[i for i in m if groups[i] == g]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
