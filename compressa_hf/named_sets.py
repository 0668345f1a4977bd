"""Named training sets for the recipes: `--data hmdb51_0.41` -> a distilled Hub config, `hmdb51_full` -> raw videos.

Raw-video entries hold a source spec in which `{ENV_VAR}` names a local folder (`{HMDB51_ROOT}`), because raw
datasets live on the user's disk; distilled entries name a Hub repo (or a local folder) and a config. Every entry
also names the source of the real test split used for evaluation. More entries come from YAML::

    my_set_0.5:
      repo: /data/my_distilled      # or org/name on the Hub
      config: ratio_0.5
      eval_source: /data/my_videos   # a videofolder, or name:key=value,...
    my_set_full:
      source: /data/my_videos
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, fields

DISTILLED_HUB_ORG = "compressa_hf"


@dataclass(frozen=True)
class NamedSet:
    """A training set the recipes can name.

    Args:
        name: The registry key.
        repo: Distilled set: Hub dataset id or local folder. None for raw-video sets.
        config: Distilled set config (e.g. `ratio_0.41`).
        source: Raw-video set: source spec of the training videos (may hold `{ENV_VAR}`).
        split: Split of `source` used for training.
        eval_source: Source spec whose `eval_split` is the real test split.
        eval_split: Split used for evaluation.
    """

    name: str
    repo: str | None = None
    config: str | None = None
    source: str | None = None
    split: str = "train"
    eval_source: str | None = None
    eval_split: str = "test"

    def __post_init__(self):
        if (self.repo is None) == (self.source is None):
            raise ValueError(f"named set {self.name!r} needs exactly one of `repo` (distilled) or `source` (raw)")
        if self.repo is not None and not self.config:
            raise ValueError(f"named set {self.name!r}: a distilled set needs `config` (e.g. ratio_0.41)")

    @property
    def distilled(self) -> bool:
        return self.repo is not None

    def expanded(self) -> NamedSet:
        """The same entry with `{ENV_VAR}` placeholders filled from the environment (error names the variable)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("repo", "source", "eval_source"):
            if values[key]:
                values[key] = _expand(values[key], self.name, key)
        return NamedSet(**values)


def _expand(text: str, name: str, key: str) -> str:
    names = [field_name for _, field_name, _, _ in string.Formatter().parse(text) if field_name]
    missing = [v for v in names if not os.environ.get(v)]
    if missing:
        raise ValueError(
            f"named set {name!r}: `{key}` is {text!r}; set the environment variable(s) {', '.join(missing)} to the "
            "folder holding that dataset"
        )
    return text.format(**{v: os.environ[v] for v in names})


def _paper_sets() -> dict[str, NamedSet]:
    """HMDB51 and UCF101 at the paper's ratios, their full training splits, and the built-in procedural set."""
    sets = {}
    raw = {"hmdb51": "hmdb51:root={HMDB51_ROOT}", "ucf101": "ucf101:root={UCF101_ROOT}"}
    ratios = {"hmdb51": ("0.21", "0.41", "0.82"), "ucf101": ("0.13", "0.26", "0.52")}
    for dataset, spec in raw.items():
        for r in ratios[dataset]:
            name = f"{dataset}_{r}"
            sets[name] = NamedSet(
                name, repo=f"{DISTILLED_HUB_ORG}/{dataset}_distilled", config=f"ratio_{r}", eval_source=spec
            )
        sets[f"{dataset}_full"] = NamedSet(f"{dataset}_full", source=spec, eval_source=spec)
    sets["procedural_full"] = NamedSet("procedural_full", source="procedural", eval_source="procedural")
    return sets


NAMED_SETS: dict[str, NamedSet] = _paper_sets()


def load_named_sets(path: str) -> dict[str, NamedSet]:
    """Read extra entries from YAML (a mapping name -> fields); unknown fields are errors naming the file."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of set name -> fields, got {type(data).__name__}")
    allowed = {f.name for f in fields(NamedSet)} - {"name"}
    out = {}
    for name, entry in data.items():
        unknown = set(entry or {}) - allowed
        if unknown:
            raise ValueError(f"{path}: set {name!r} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        out[name] = NamedSet(name=name, **(entry or {}))
    return out


def resolve_named_set(name: str, extra_yaml: str | None = None) -> NamedSet:
    """The entry for `name` (built-ins, then `extra_yaml` entries, which may override), with env vars expanded."""
    registry = dict(NAMED_SETS)
    if extra_yaml:
        registry.update(load_named_sets(extra_yaml))
    if name not in registry:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name].expanded()
