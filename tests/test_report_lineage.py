"""Lineage: file hashes, git commit and the footer's verification of recorded hashes."""
import hashlib
import subprocess

import pytest

from analyses.reporting import file_sha256, git_commit
from analyses.reporting.lineage import input_rows
from tests.report_fixtures import make_inputs_on_disk


def test_file_sha256_matches_known_digests(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * 12_000  # ~3 MB: several read chunks
    big.write_bytes(payload)
    assert file_sha256(big) == hashlib.sha256(payload).hexdigest()


def test_git_commit_of_a_checkout_and_of_a_plain_directory(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_commit(plain) == "unknown"
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / "f.txt").write_text("x", encoding="utf-8")
    subprocess.run(["git", "-C", str(repo), "add", "f.txt"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "init"], check=True, env=env)
    expected = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert git_commit(repo) == expected and len(expected) == 40
    # untracked files (e.g. outputs) do not make the code differ from the commit ...
    (repo / "notes.txt").write_text("scratch", encoding="utf-8")
    assert git_commit(repo) == expected
    # ... but an uncommitted change to a tracked file does
    (repo / "f.txt").write_text("changed", encoding="utf-8")
    assert git_commit(repo) == expected + "-dirty"


def test_footer_rows_verify_each_recorded_hash(tmp_path):
    data_quality, lineage = make_inputs_on_disk(tmp_path)
    rows = {row["source"]: row for row in input_rows(lineage, data_quality)}
    assert all(row["status"] == "matches file on disk" for row in rows.values())
    assert rows["firms"]["sha256"] == file_sha256(tmp_path / "firms.csv")
    assert rows["firms"]["contract_version"] == "1.2.0"
    # a file edited after the run is flagged, a missing one is reported as unverifiable
    (tmp_path / "exports.csv").write_text("tampered\n", encoding="utf-8")
    (tmp_path / "services.csv").unlink()
    rows = {row["source"]: row for row in input_rows(lineage, data_quality)}
    assert rows["exports"]["status"].startswith("MISMATCH")
    assert rows["services"]["status"] == "file not available to verify"
    assert rows["firms"]["status"] == "matches file on disk"


def test_disagreeing_data_quality_hash_is_flagged(tmp_path):
    data_quality, lineage = make_inputs_on_disk(tmp_path)
    data_quality["sources"]["firms"]["sha256"] = "0" * 64
    rows = {row["source"]: row for row in input_rows(lineage, data_quality)}
    assert rows["firms"]["status"].endswith("differs from the hash in the data-quality record")


def test_incomplete_lineage_names_the_missing_keys(tmp_path):
    _, lineage = make_inputs_on_disk(tmp_path)
    del lineage["run_id"]
    with pytest.raises(ValueError, match=r"missing keys \['run_id'\]"):
        input_rows(lineage)
