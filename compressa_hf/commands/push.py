"""Upload a distilled set folder to the Hugging Face Hub as a dataset repository.

Usage:
    compressa push outputs/hmdb51_distilled compressa_hf/hmdb51_distilled [--private] [--dry-run]

Uploads `README.md` (the card), `data/**` and `meta/**`; work files and pictures stay behind. The token comes from
`HF_TOKEN` or `hf auth login` and is never printed. `--dry-run` lists what would be uploaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class PushArguments:
    """Arguments of `compressa push`.

    Args:
        folder: Distilled set folder written by `compressa distill`.
        repo_id: Hub dataset id, `org/name`.
        private: Create the repo as private.
        dry_run: List the files and bytes that would be uploaded, upload nothing.
    """

    folder: str = field(default=None, metadata={"help": "Distilled set folder."})
    repo_id: str = field(default=None, metadata={"help": "Hub dataset id (org/name)."})
    private: bool = field(default=False, metadata={"help": "Create the repo as private."})
    dry_run: bool = field(default=False, metadata={"help": "List what would be uploaded."})


def make_parser():
    from trl import TrlParser

    return TrlParser((PushArguments,), prog="compressa push", allow_abbrev=False)


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.api import push

    argv = list(argv or [])
    positional = []
    while argv and not argv[0].startswith("-") and len(positional) < 2:  # `compressa push DIR org/name`
        positional.append(argv.pop(0))
    argv = [*(x for pair in zip(("--folder", "--repo_id"), positional) for x in pair), *argv]
    (args,) = make_parser().parse_args_and_config(argv)
    if not args.folder or not args.repo_id:
        raise SystemExit("compressa push: give the folder and the Hub id: `compressa push DIR org/name`")
    out = push(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    print(json.dumps(out.summary, indent=2))
    return 0
