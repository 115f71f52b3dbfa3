"""Benchmark: validating 1 million export rows with Great Expectations vs the same rules in pandas.

Both engines get the same typed validation frame (text parsing is shared and timed apart) and
must return identical failing rows for every rule. Each engine runs in its own process so that
its peak memory (max RSS) is its own. Prints the figures; ``--rows`` changes the size.

    .venv/bin/python benchmarks/validate_exports.py [--rows 1000000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses.contracts import SOURCES, GXRunner, find_source_file, load_contracts, read_source, validate_source  # noqa: E402
from analyses.contracts.model import country_codes  # noqa: E402
from analyses.contracts.synthetic import write_synthetic_landing  # noqa: E402
from analyses.contracts.validation import _row_rules, _typed, _validation_frame  # noqa: E402

BAD_ROW_SHARE = 0.01


def _spoil(landing: Path) -> int:
    """Turn 1 % of export rows bad (negative value, unknown code, unknown firm) so every rule has work."""
    path = landing / "exports.csv"
    lines = path.read_text().splitlines()
    rng = np.random.default_rng(1)
    spoiled = rng.choice(np.arange(1, len(lines)), int(BAD_ROW_SHARE * (len(lines) - 1)), replace=False)
    for k, index in enumerate(spoiled):
        firm, year, destination, value = lines[index].split(",")
        lines[index] = ",".join(
            (firm, year, destination, f"-{value}") if k % 3 == 0
            else (firm, year, "ZZ", value) if k % 3 == 1
            else ("X" + firm, year, destination, value)
        )
    path.write_text("\n".join(lines) + "\n")
    return len(spoiled)


def _pandas_failures(frame, rules, panel: tuple[int, int], known_firms, accounts) -> dict[str, np.ndarray]:
    """The exports rules written directly in pandas (what GX is compared against)."""
    codes = country_codes()
    firm_years = pd.MultiIndex.from_frame(accounts[["firm_id", "year"]].astype({"year": float}))
    has_keys = frame["firm_id"].notna() & frame["year"].notna()
    keys = pd.MultiIndex.from_arrays([frame["firm_id"], frame["year"].astype(float)])
    masks = {
        "types.year": ~frame["year__readable"],
        "types.export_value_eur": ~frame["export_value_eur__readable"],
        "types.year.number_format": ~frame["year__decided"],
        "types.export_value_eur.number_format": ~frame["export_value_eur__decided"],
        "completeness.firm_id": frame["firm_id"].isna(),
        "completeness.year": frame["year__typed"] & frame["year"].isna(),
        "completeness.destination": frame["destination"].isna(),
        "completeness.export_value_eur": frame["export_value_eur__typed"] & frame["export_value_eur"].isna(),
        "ranges.export_value_eur": frame["export_value_eur"] < 0,
        "allowed_values.destination": frame["destination"].notna() & ~frame["destination"].isin(codes),
        "uniqueness.exact_duplicate_row": frame["__exact_duplicate"],
        "referential_integrity.firm_id": frame["firm_id"].notna() & ~frame["firm_id"].isin(known_firms),
        "panel_years.year": (frame["year"] < panel[0]) | (frame["year"] > panel[1]),
        "referential_integrity.firm_id+year": pd.Series(has_keys.to_numpy() & ~keys.isin(firm_years), index=frame.index),
    }
    assert set(masks) == {rule.id for rule in rules}, "benchmark rules out of step with the contract"
    return {rule_id: frame["__position"].to_numpy()[mask.to_numpy()] for rule_id, mask in masks.items()}


def run_engine(engine: str, landing: Path) -> dict:
    """Child process: build the exports validation frame, then time one engine on it.

    The engine runs twice: once timed, once under tracemalloc for its peak allocation (tracemalloc
    slows Python-heavy code, so the timed run is without it).
    """
    contracts = load_contracts()
    raws = {source: read_source(find_source_file(landing, source), contracts[source]) for source in SOURCES}
    runner = GXRunner()
    references: dict = {}
    for source in ("firms", "financials"):
        references[source] = validate_source(raws[source], contracts[source], references, runner).clean
    raw, contract = raws["exports"], contracts["exports"]
    started = time.perf_counter()
    typed = _typed(raw, contract)
    parse_seconds = time.perf_counter() - started
    rules = _row_rules(contract, references)
    frame = _validation_frame(raw, contract, typed, references)
    years = references["financials"]["year"]

    def evaluate() -> dict[str, np.ndarray]:
        if engine == "gx":
            return runner.failing_rows("exports_benchmark", frame, rules)
        return _pandas_failures(frame, rules, (int(years.min()), int(years.max())), references["firms"]["firm_id"],
                                references["financials"])

    started = time.perf_counter()
    failures = evaluate()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    evaluate()
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "engine": engine,
        "rows": len(frame),
        "parse_seconds": parse_seconds,
        "rules_seconds": seconds,
        "peak_alloc_mb": peak_bytes / 2**20,
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "failing": {rule_id: sorted(map(int, rows)) for rule_id, rows in failures.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("gx", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--landing", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.landing)))
        return
    with tempfile.TemporaryDirectory() as directory:
        landing = write_synthetic_landing(Path(directory), firms=10_000, export_rows=args.rows)
        spoiled = _spoil(landing)
        print(f"exports: {args.rows:,} rows ({spoiled:,} spoiled), 10,000 firms, 110,000 firm-years")
        outcomes = {}
        for engine in ("pandas", "gx"):
            child = subprocess.run(
                [sys.executable, __file__, "--engine", engine, "--landing", str(landing)],
                check=True, capture_output=True, text=True, env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
            )
            outcomes[engine] = json.loads(child.stdout.strip().splitlines()[-1])
    gx, pandas_ = outcomes["gx"], outcomes["pandas"]
    identical = gx["failing"] == pandas_["failing"]
    flagged = len({row for rows in gx["failing"].values() for row in rows})
    print(f"text parsing (shared):       {gx['parse_seconds']:6.2f} s   validation frame {gx['frame_mb']:.0f} MB")
    for name, outcome in (("plain pandas", pandas_), ("Great Expectations", gx)):
        print(
            f"{name + ' rules:':28}{outcome['rules_seconds']:6.2f} s   peak extra memory {outcome['peak_alloc_mb']:6.0f} MB"
            f"   (process max RSS {outcome['max_rss_mb']:.0f} MB)"
        )
    print(f"ratio GX / pandas:           {gx['rules_seconds'] / pandas_['rules_seconds']:6.1f} x")
    print(f"same failing rows per rule:  {identical} ({flagged:,} rows flagged, {len(gx['failing'])} rules)")
    if not identical:
        sys.exit("GX and pandas disagree; see the rule definitions")


if __name__ == "__main__":
    main()
