"""Lineage: enough provenance in the report footer to reproduce its numbers."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Mapping

from analyses.deliveries import file_sha256

REQUIRED_LINEAGE_KEYS = ("run_id", "git_commit", "generated_at", "inputs", "contract_versions")


def git_commit(repo_dir) -> str:
    """HEAD commit of `repo_dir`, with "-dirty" when tracked files have uncommitted changes.

    A report built from modified code cannot be reproduced from the commit
    alone, so the footer must not pretend it can. "unknown" when
    `repo_dir` is not a git checkout (or git is missing).
    """
    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    # a status that cannot be read is not evidence of a clean tree
    dirty = status is None or status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def validate_lineage(lineage: Mapping) -> None:
    missing = [key for key in REQUIRED_LINEAGE_KEYS if key not in lineage]
    if missing:
        raise ValueError(f"lineage is missing keys {missing}; required: {list(REQUIRED_LINEAGE_KEYS)}")
    for source, entry in lineage["inputs"].items():
        if not isinstance(entry, Mapping) or "sha256" not in entry or "file" not in entry:
            raise ValueError(f"lineage['inputs'][{source!r}] must be a mapping with 'file' and 'sha256'")


def input_rows(lineage: Mapping, data_quality: Mapping | None = None,
               locations: Mapping[str, Path] | None = None) -> list[dict]:
    """One footer row per input file, with the recorded hash checked against the file on disk.

    A hash that no longer matches means the file changed after the numbers
    were computed; the footer says so instead of silently vouching for it.
    ``locations`` maps each source to where its file lies; it is used, never printed, because
    published files must not show the analyst's file system.
    """
    validate_lineage(lineage)
    sources = (data_quality or {}).get("sources", {})
    versions = lineage.get("contract_versions", {})
    rows = []
    for source, entry in sorted(lineage["inputs"].items()):
        recorded = str(entry["sha256"])
        path = Path((locations or {}).get(source) or entry["file"])
        if path.is_file():
            status = "matches file on disk" if file_sha256(path) == recorded else "MISMATCH: file changed since the run"
        else:
            status = "file not available to verify"
        quality_hash = sources.get(source, {}).get("sha256")
        if quality_hash and quality_hash != recorded:
            status += "; differs from the hash in the data-quality record"
        rows.append({"source": source, "file": path.name, "sha256": recorded,
                     "contract_version": str(versions.get(source, "n/a")), "status": status})
    return rows
