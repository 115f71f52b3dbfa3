"""Publishing a run's files atomically: all of them, or a plain note that the run failed.

A run writes into ``<output>/.staging/<run_id>/``; only when everything is written and checked
is that folder moved to ``<output>/<delivery>/`` in one rename, so a reader never sees one run's
report beside another run's estimates. A failed run publishes ``RUN_FAILED.txt`` (and the
data-quality record, when validation got that far) in place of the report. Every published
folder has a ``run.json`` saying which run produced it and whether it succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

STAGING = ".staging"
FAILURE_NOTE = "RUN_FAILED.txt"
RUN_RECORD = "run.json"
#: Files a failed run may still publish: what was learned about the delivery, never half a report.
KEPT_ON_FAILURE = ("data_quality.json",)


def staging_dir(output_root: str | Path, run_id: str) -> Path:
    """The run's private folder inside the output folder (same file system, so the move is a rename)."""
    path = Path(output_root) / STAGING / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_restricted_apart(output_root: str | Path, restricted_root: str | Path) -> None:
    """Refuse a restricted folder (warehouse, quarantine) inside the publishable output folder.

    Raises ``ValueError`` naming both folders: whoever shares the output folder would share
    firm-level data too.
    """
    output, restricted = Path(output_root).resolve(), Path(restricted_root).resolve()
    if restricted == output or output in restricted.parents:
        raise ValueError(
            f"the restricted folder {restricted} (warehouse, quarantine files: firm-level data) lies inside the "
            f"output folder {output}, which is meant to be published; set EXPORT_IMPACT_WAREHOUSE to a folder "
            "outside it"
        )


def publish(staged: Path, output_root: str | Path, delivery: str, run_id: str, status: str = "succeeded") -> Path:
    """Move ``staged`` to ``<output>/<delivery>/`` in one rename, replacing what was there.

    The previous folder is renamed aside first and deleted after, so at every moment the
    delivery's folder is either the old complete set or the new complete set.
    """
    output_root = Path(output_root)
    record = {
        "run_id": run_id,
        "delivery": delivery,
        "status": status,
        "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": sorted(p.name for p in staged.iterdir() if p.name != RUN_RECORD),
    }
    (staged / RUN_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    target = output_root / delivery
    retired = output_root / STAGING / f"{run_id}.replaced"
    if target.exists():
        os.replace(target, retired)
    os.replace(staged, target)
    shutil.rmtree(retired, ignore_errors=True)
    return target


EXAMPLE_OPENING = "(e.g. "


def withhold_examples(text: str) -> str:
    """``text`` without its ``(e.g. <delivered value> in row N)`` clauses.

    Failure messages quote a delivered cell so the analyst can find it (in the terminal, the
    UI, the log). Such a cell may be a firm identifier or any quarantined content, so published
    text keeps the rule, column and counts and withholds the example. The clause ends at the first
    ``)`` outside a quoted value (values are quoted with ``repr``).
    """
    out, position = [], 0
    while (start := text.find(EXAMPLE_OPENING, position)) >= 0:
        out.append(text[position:start].rstrip(" "))
        index, quote = start + len(EXAMPLE_OPENING), None
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = None
            elif char in "'\"":
                quote = char
            elif char == ")":
                break
            index += 1
        position = index + 1
    out.append(text[position:])
    return "".join(out)


def publish_failure(output_root: str | Path, delivery: str, run_id: str, problems: list[str],
                    private_paths: tuple[str | Path, ...] = ()) -> Path:
    """Publish a plain failure note for ``delivery`` (plus the data-quality record if one was staged).

    The note withholds delivered example values and names private folders by their last part only.
    """
    staged = Path(output_root) / STAGING / run_id
    if staged.exists():
        for path in staged.iterdir():
            if path.name not in KEPT_ON_FAILURE:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    staged.mkdir(parents=True, exist_ok=True)
    lines = [
        f"The evaluation of delivery {delivery} FAILED (run {run_id}).",
        "No report or estimates were published by this run.",
        "",
        "What went wrong:",
        *[f"  - {publishable_problem(problem, private_paths)}"
          for problem in problems or ["the run stopped before it could say why (killed?)"]],
    ]
    if (staged / "data_quality.json").exists():
        lines += ["", "data_quality.json in this folder accounts for every delivered row."]
    (staged / FAILURE_NOTE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return publish(staged, output_root, delivery, run_id, status="failed")


def publishable_problem(problem: str, private_paths: tuple[str | Path, ...]) -> str:
    """``problem`` without delivered example values, private folders named by their last part only."""
    text = withhold_examples(problem)
    for folder in sorted((Path(p).resolve() for p in private_paths), key=lambda p: len(str(p)), reverse=True):
        text = text.replace(str(folder), folder.name)
    return text.replace("\n", "\n    ")


def published_status(output_root: str | Path, delivery: str) -> dict | None:
    """The ``run.json`` of a delivery's published folder, or ``None`` when nothing was published."""
    path = Path(output_root) / delivery / RUN_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def private_paths_in(folder: str | Path, private: list[str | Path]) -> list[dict]:
    """Every published file in ``folder`` that mentions a private folder (landing, warehouse, home).

    Returns rows ``{"file", "path"}``; empty when clean. Binary files (PDF, Parquet) are searched
    as bytes, since their text streams may be compressed this catches only plain occurrences;
    they are rendered from the same content as the HTML and CSV, which are searched in full.
    """
    folders = {Path(p).resolve() for p in private if p}
    needles = sorted({str(p) for p in folders if len(p.parts) > 1}, key=len, reverse=True)
    found = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file():
            continue
        content = path.read_bytes()
        for needle in needles:
            if needle.encode("utf-8") in content:
                found.append({"file": path.name, "path": needle})
                break
    return found
