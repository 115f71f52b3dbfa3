"""Benchmark: 50 million customs transactions to the firm-year panel's export table, out of core.

Generates shipment-level transactions with DuckDB (streamed straight to CSV, so generation itself
stays in bounded memory), then runs the product's path - staging with pseudonymisation, the
contract's rules in DuckDB SQL, quarantine spool, the firm-year-destination sum - and, on a size
it can hold, a plain pandas baseline (``read_csv`` + ``groupby``, no validation). Each measured
step runs in its own process; its peak memory is that process's max RSS (``os.wait4``).

    .venv/bin/python benchmarks/customs_transactions.py [--rows 50000000] [--baseline-rows 5000000]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_YEAR, YEARS = 2014, 10
DESTINATIONS = ("DE", "FR", "IT", "ES", "NL", "BE", "PL", "AT", "SE", "DK", "US", "CN", "GB", "CH", "JP", "CA",
                "TR", "IN", "BR", "MX", "NO", "CZ", "HU", "RO", "PT", "IE", "FI", "GR", "KR", "AU")
PRODUCTS = ("847989", "020130", "620342", "300490", "870323", "940360", "851762", "392690")
KEY = "benchmark-key-0123456789abcdef0123456789"


def write_references(folder: Path, firms: int) -> None:
    """The firm register and accounts the transactions refer to (every firm, every year)."""
    import pandas as pd

    ids = [f"F{i:06d}" for i in range(firms)]
    pd.DataFrame({"firm_id": ids, "nace2": "28", "region": "AT13", "founded_year": "2000", "in_cluster": "false"}).to_csv(
        folder / "firms.csv", index=False)
    pd.DataFrame({"firm_id": [f for f in ids for _ in range(YEARS)],
                  "year": [str(FIRST_YEAR + y) for _ in ids for y in range(YEARS)],
                  "employees": "12", "turnover_eur": "1000000"}).to_csv(folder / "financials.csv", index=False)


def generate(path: Path, rows: int, firms: int) -> None:
    """``rows`` transactions (0.1 % with a negative value) streamed by DuckDB into one CSV."""
    import duckdb

    destinations = "[" + ", ".join(f"'{code}'" for code in DESTINATIONS) + "]"
    products = "[" + ", ".join(f"'{code}'" for code in PRODUCTS) + "]"
    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    con.execute(f"""
        COPY (
          SELECT 'F' || lpad((h1 % {firms})::VARCHAR, 6, '0') AS firm_id,
                 make_date({FIRST_YEAR} + (h2 % {YEARS})::INT, 1 + (h2 // 16 % 12)::INT, 1 + (h2 // 256 % 28)::INT) AS date,
                 {destinations}[1 + ((h1 % {firms}) * 7 + h3 % 6) % {len(DESTINATIONS)}] AS destination,
                 {products}[1 + h3 // 8 % {len(PRODUCTS)}] AS hs6,
                 round((CASE WHEN h3 % 1000 = 0 THEN -1 ELSE 1 END) * (1 + h2 // 4096 % 200000) / 10.0, 2) AS value_eur
          FROM (SELECT (hash(i) % 1000000007)::BIGINT AS h1, (hash(i + {rows}) % 1000000007)::BIGINT AS h2,
                       (hash(i + 2 * {rows}) % 1000000007)::BIGINT AS h3 FROM range({rows}) r(i))
        ) TO '{path}' (HEADER, DELIMITER ',')
    """)
    con.close()


def product(folder: Path) -> dict:
    """The product's path: references validated by the contract engine, transactions staged and validated in DuckDB."""
    from analyses.contracts import find_source_file, load_contracts, read_source, validate_source
    from analyses.contracts.model import load_contract
    from analyses.contracts.reporting import write_quarantine
    from analyses.contracts.transactions import stage_transactions, validate_transactions
    from analyses.pseudonyms import Pseudonymiser

    pseudonymiser, contracts = Pseudonymiser(KEY), load_contracts()
    references = {}
    for source in ("firms", "financials"):
        raw = read_source(find_source_file(folder, source), contracts[source])
        raw.frame["firm_id"], _ = pseudonymiser.replace(raw.frame["firm_id"])
        references[source] = validate_source(raw, contracts[source], references).clean
    start = time.perf_counter()
    raw, mapping = stage_transactions(find_source_file(folder, "exports"), load_contract("customs_transactions"),
                                      folder / "restricted" / "customs_transactions.duckdb", pseudonymiser.mapping)
    staged = time.perf_counter() - start
    result = validate_transactions(raw, references)
    write_quarantine(result, folder / "restricted")
    return {"rows_in": result.rows_in, "rows_clean": result.rows_clean, "rows_quarantined": result.rows_quarantined,
            "aggregated_rows": len(result.clean), "firms": len(mapping), "staging_s": staged,
            "seconds": time.perf_counter() - start}


def baseline(folder: Path) -> dict:
    """Plain pandas: read the whole CSV, drop negative values, sum per firm, year and destination."""
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(folder / "customs_transactions.csv", dtype={"firm_id": str, "hs6": str}, parse_dates=["date"])
    frame = frame[frame["value_eur"] >= 0]
    table = frame.groupby([frame["firm_id"], frame["date"].dt.year.rename("year"), frame["destination"]])["value_eur"].sum()
    return {"rows_in": int(len(frame)), "aggregated_rows": int(len(table)), "seconds": time.perf_counter() - start}


def measured(step: str, folder: Path) -> dict:
    """Run ``step`` in a child process; its wall time and peak RSS (os.wait4, so only that child's)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--child", step, str(folder)], stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"{step} on {folder} failed (status {status})")
    return {**json.loads(output), "wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}


def delivery(base: Path, name: str, rows: int, firms: int) -> tuple[Path, dict]:
    folder = base / name
    folder.mkdir()
    write_references(folder, firms)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--child", "generate", str(folder), str(rows), str(firms)])
    _pid, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit("generation failed")
    size = (folder / "customs_transactions.csv").stat().st_size
    return folder, {"seconds": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024, "gb": size / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000_000)
    parser.add_argument("--firms", type=int, default=20_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, folder = args.child[0], Path(args.child[1])
        if step == "generate":
            generate(folder / "customs_transactions.csv", int(args.child[2]), int(args.child[3]))
        else:
            print(json.dumps(product(folder) if step == "product" else baseline(folder)))
        return
    base = Path(tempfile.mkdtemp(prefix="customs_bench_"))
    try:
        small, small_gen = delivery(base, "small", args.baseline_rows, args.firms)
        small_product, small_pandas = measured("product", small), measured("baseline", small)
        assert small_product["aggregated_rows"] == small_pandas["aggregated_rows"], (small_product, small_pandas)
        shutil.rmtree(small)
        large, large_gen = delivery(base, "large", args.rows, args.firms)
        large_product = measured("product", large)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"Customs transactions to the firm-year-destination table ({args.firms:,} firms, {YEARS} years; 2 cores shared)")
    print(f"  generated {args.baseline_rows:>12,} rows ({small_gen['gb']:.2f} GB CSV) in {small_gen['seconds']:6.1f} s, "
          f"peak RSS {small_gen['peak_rss_mb']:,.0f} MB")
    print(f"  generated {args.rows:>12,} rows ({large_gen['gb']:.2f} GB CSV) in {large_gen['seconds']:6.1f} s, "
          f"peak RSS {large_gen['peak_rss_mb']:,.0f} MB")
    print("  wall s: the whole child process (imports, and for the product the register and accounts validated with GX);")
    print("  step s: reading, validating and summing the transactions only (the product: staging + rules + quarantine)")
    print(f"  {'path':<44} {'rows':>12} {'wall s':>8} {'step s':>8} {'peak RSS MB':>12} {'table rows':>11}")
    for label, figures, rows in (
        ("pandas baseline (read_csv + groupby)", small_pandas, args.baseline_rows),
        ("product (DuckDB, validated, pseudonymised)", small_product, args.baseline_rows),
        ("product (DuckDB, validated, pseudonymised)", large_product, args.rows),
    ):
        print(f"  {label:<44} {rows:>12,} {figures['wall_s']:>8.1f} {figures['seconds']:>8.1f} {figures['peak_rss_mb']:>12,.0f} "
              f"{figures['aggregated_rows']:>11,}")
    print(f"  product at {args.rows:,} rows: {large_product['rows_clean']:,} clean, {large_product['rows_quarantined']:,} "
          f"quarantined; staging {large_product['staging_s']:.1f} s; peak RSS goal 4,096 MB: "
          f"{'met' if large_product['peak_rss_mb'] <= 4096 else 'MISSED'}")


if __name__ == "__main__":
    main()
