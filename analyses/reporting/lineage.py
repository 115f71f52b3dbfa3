"""Lineage: enough provenance in the report footer to reproduce its numbers."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Mapping

REQUIRED_LINEAGE_KEYS = ("run_id", "git_commit", "generated_at", "inputs", "contract_versions")


def file_sha256(path) -> str:
    """SHA-256 of a file, read in chunks so large deliveries do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def input_rows(lineage: Mapping, data_quality: Mapping | None = None) -> list[dict]:
    """One footer row per input file, with the recorded hash checked against the file on disk.

    A hash that no longer matches means the file changed after the numbers
    were computed; the footer says so instead of silently vouching for it.
    The file is looked up at the absolute ``path`` recorded in the lineage entry or the
    data-quality record (the bare ``file`` name only resolves in the landing directory).
    """
    validate_lineage(lineage)
    sources = (data_quality or {}).get("sources", {})
    versions = lineage.get("contract_versions", {})
    rows = []
    for source, entry in sorted(lineage["inputs"].items()):
        recorded = str(entry["sha256"])
        path = Path(entry.get("path") or sources.get(source, {}).get("path") or entry["file"])
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
