"""Upload a distilled set folder to the Hugging Face Hub as a dataset repo (token from the usual HF login)."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

# What a distilled set repo consists of; work files and local pictures stay behind.
UPLOAD_PATTERNS = ["README.md", "data/**", "meta/**"]


def files_to_upload(folder: str) -> list[str]:
    """Relative paths `push_repo` would upload, sorted."""
    import fnmatch

    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # temp folders of an interrupted write
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), folder)
            if any(fnmatch.fnmatch(rel, p) for p in UPLOAD_PATTERNS):
                out.append(rel)
    return sorted(out)


def local_paths_in(folder: str, files: list[str]) -> list[tuple[str, str]]:
    """(file, path) for every machine-local path in the text files and the parquet string columns to upload."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from compressa_hf.publish import find_local_paths

    found = []
    for rel in files:
        path = os.path.join(folder, rel)
        if rel.endswith(".parquet"):
            schema = pq.read_schema(path)
            columns = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            table = pq.read_table(path, columns=columns)
            texts = [str(v) for c in columns for v in table.column(c).to_pylist() if v is not None]
        elif rel.endswith((".md", ".json", ".yaml", ".txt")):
            with open(path, encoding="utf-8") as f:
                texts = [f.read()]
        else:
            continue
        found += [(rel, p) for text in texts for p in find_local_paths(text)]
    return found


def codec_warnings(folder: str) -> list[str]:
    """Why a reader elsewhere could not decode a config with the codec its card names (empty when it can)."""
    from compressa_hf.codecs import portability_problem
    from compressa_hf.store import read_meta

    out = []
    for name, meta in read_meta(folder).items():
        problem = portability_problem(meta.get("codec_id", ""))
        if problem:
            out.append(f"config {name}: {problem}")
    return out


def license_warnings(folder: str) -> list[str]:
    """What a reader of the card cannot tell about its terms: configs whose licence is unknown or not recorded."""
    from compressa_hf.store import read_meta

    out = []
    for name, meta in read_meta(folder).items():
        terms = meta.get("license") or {}
        if terms.get("license", "unknown") == "unknown":
            out.append(
                f"config {name}: the card states no licence (`license: unknown`): the terms of its source clips are "
                "not known to compressa_hf; re-run `compressa distill ... --license <Hub licence id>` to state them"
            )
    return out


def push_repo(folder: str, repo_id: str, private: bool = False, dry_run: bool = False) -> dict:
    """Create (if needed) the dataset repo `repo_id` and upload the set; with `dry_run`, only list the files.

    Refuses a set that would publish a machine-local path (in the card, `meta/` or the rows), naming where, and
    warns loudly when a config's codec cannot be resolved on another machine. The token is read by huggingface_hub
    (HF_TOKEN or `hf auth login`); it is never passed through or logged here.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not os.path.exists(os.path.join(folder, "README.md")):
        raise FileNotFoundError(f"{folder} has no README.md: not a distilled set (run `compressa distill` first)")
    try:  # before anything is listed, so a dry run catches it too
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"{repo_id!r} is not a Hub dataset id (`org/name`): {err}") from None
    files = files_to_upload(folder)
    local = local_paths_in(folder, files)
    if local:
        shown = "; ".join(f"{rel}: {p}" for rel, p in local[:5]) + (
            f"; ... ({len(local)} in all)" if len(local) > 5 else ""
        )
        raise ValueError(
            f"{folder} would publish paths of this machine ({shown}). Sets written by this version of compressa_hf "
            "record sources relative to their root; re-run `compressa distill` into a new folder (the latent cache "
            "is reused) and push that"
        )
    warnings = codec_warnings(folder) + license_warnings(folder)
    for w in warnings:
        logger.warning("%s", w)
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    summary = {"repo_id": repo_id, "files": files, "bytes": total, "private": private, "dry_run": dry_run}
    summary["warnings"] = warnings
    if dry_run:
        return summary
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=UPLOAD_PATTERNS,
        commit_message="Upload distilled set with compressa_hf",
    )
    logger.info("uploaded %d files (%d bytes) to %s", len(files), total, url)
    return summary | {"url": str(url), "commit": getattr(commit, "oid", None)}
