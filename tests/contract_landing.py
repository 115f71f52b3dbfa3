"""A small, valid landing folder for the contract tests, and a helper that runs the contract stage.

Built in code (not committed files) so each corpus case states exactly what it changes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyses.contracts import SOURCES, find_source_file, load_contracts, read_source, validate_sources

FIRM_COUNT = 40
YEARS = (2017, 2018, 2019, 2020)


def valid_tables() -> dict[str, pd.DataFrame]:
    """40 firms, 160 firm-years, 30 episodes, 80 export rows — one bad row stays under the 5 % threshold."""
    ids = [f"{i:05d}" for i in range(FIRM_COUNT)]
    firms = pd.DataFrame(
        {
            "firm_id": ids,
            "nace2": [("01", "10", "28", "62", "46")[i % 5] for i in range(FIRM_COUNT)],
            "region": [("AT13", "DE21", "ITC4", "FR10")[i % 4] for i in range(FIRM_COUNT)],
            "founded_year": [str(1990 + i % 25) for i in range(FIRM_COUNT)],
            "in_cluster": [("true", "false", "yes", "no", "1", "0")[i % 6] for i in range(FIRM_COUNT)],
        }
    )
    financials = pd.DataFrame(
        [
            {"firm_id": firm, "year": str(year), "employees": str(5 + i), "turnover_eur": f"{100000 + 1000 * i}.50"}
            for i, firm in enumerate(ids)
            for year in YEARS
        ]
    )
    services = ("advisory", "network", "grant")
    participation = pd.DataFrame(
        [
            {
                "firm_id": ids[i],
                "programme": "Go International",
                "service": services[i % 3],
                "start_date": "2018-03-01" if i % 2 else "01.06.2019",
                "end_date": "2019-12-31" if i % 4 else "",
                "advisory_hours": "12.5" if i % 3 == 0 else "",
                "grant_eur": "15000" if i % 3 == 2 else "",
                "network_events": "3" if i % 3 == 1 else "",
            }
            for i in range(30)
        ]
    )
    destinations = ("DE", "FR", "US", "CN", "GB", "NA")
    exports = pd.DataFrame(
        [
            {"firm_id": firm, "year": str(year), "destination": destinations[i % 6], "export_value_eur": str(1000 + i)}
            for i, firm in enumerate(ids)
            for year in YEARS
            if (i + year) % 2 == 0
        ]
    )
    return {"firms": firms, "financials": financials, "participation": participation, "exports": exports}


def write_landing(directory: Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the tables as UTF-8, comma-separated CSV files (the corpus cases then alter one)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source, table in (tables or valid_tables()).items():
        table.to_csv(directory / f"{source}.csv", index=False)
    return directory


def run_contracts(landing: Path):
    """Read and validate the four files exactly as the Dagster stage does; returns (raws, results)."""
    contracts = load_contracts()
    raws = {source: read_source(find_source_file(landing, source), contracts[source]) for source in SOURCES}
    return raws, validate_sources(raws, contracts)
