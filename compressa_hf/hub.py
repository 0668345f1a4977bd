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


def push_repo(folder: str, repo_id: str, private: bool = False, dry_run: bool = False) -> dict:
    """Create (if needed) the dataset repo `repo_id` and upload the set; with `dry_run`, only list the files.

    The token is read by huggingface_hub (HF_TOKEN or `hf auth login`); it is never passed through or logged here.
    """
    if not os.path.exists(os.path.join(folder, "README.md")):
        raise FileNotFoundError(f"{folder} has no README.md: not a distilled set (run `compressa distill` first)")
    files = files_to_upload(folder)
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    summary = {"repo_id": repo_id, "files": files, "bytes": total, "private": private, "dry_run": dry_run}
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
