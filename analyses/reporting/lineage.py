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
    """HEAD commit of `repo_dir`, or "unknown" when it is not a git checkout."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and commit else "unknown"


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
    """
    validate_lineage(lineage)
    sources = (data_quality or {}).get("sources", {})
    versions = lineage.get("contract_versions", {})
    rows = []
    for source, entry in sorted(lineage["inputs"].items()):
        recorded = str(entry["sha256"])
        path = Path(entry["file"])
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
