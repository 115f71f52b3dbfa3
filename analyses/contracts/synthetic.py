"""Valid synthetic landing files of any size, for the volume tests and the validation benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_DESTINATIONS = np.array(["DE", "FR", "IT", "NL", "US", "CN", "GB", "CH", "PL", "NA", "JP", "AT"])
_NACE = np.array(["01", "10", "20", "25", "28", "46", "62", "71"])
_REGIONS = np.array(["AT13", "AT22", "DE21", "ITC4", "FR10", "PL91"])
PANEL_YEARS = tuple(range(2010, 2021))


def write_synthetic_landing(directory: Path, firms: int = 10_000, export_rows: int = 100_000, seed: int = 0) -> Path:
    """Write four contract-valid CSV files: ``firms`` firms, full panel accounts, episodes, ``export_rows`` exports."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.char.zfill(np.arange(1, firms + 1).astype(str), 6)
    pd.DataFrame(
        {
            "firm_id": ids,
            "nace2": rng.choice(_NACE, firms),
            "region": rng.choice(_REGIONS, firms),
            "founded_year": rng.integers(1950, 2010, firms),
            "in_cluster": rng.choice(["true", "false"], firms),
        }
    ).to_csv(directory / "firms.csv", index=False)
    years = np.array(PANEL_YEARS)
    pd.DataFrame(
        {
            "firm_id": np.repeat(ids, len(years)),
            "year": np.tile(years, firms),
            "employees": rng.integers(1, 250, firms * len(years)),
            "turnover_eur": np.round(rng.lognormal(13, 1, firms * len(years)), 2),
        }
    ).to_csv(directory / "financials.csv", index=False)
    treated = rng.choice(ids, firms // 5, replace=False)
    start = pd.to_datetime("2012-01-01") + pd.to_timedelta(rng.integers(0, 3000, len(treated)), unit="D")
    service = rng.choice(["advisory", "network", "grant"], len(treated))
    pd.DataFrame(
        {
            "firm_id": treated,
            "programme": "Go International",
            "service": service,
            "start_date": start.strftime("%Y-%m-%d"),
            "end_date": (start + pd.Timedelta(days=180)).strftime("%d.%m.%Y"),
            "advisory_hours": np.where(service == "advisory", "20", ""),
            "grant_eur": np.where(service == "grant", "15000", ""),
            "network_events": np.where(service == "network", "2", ""),
        }
    ).to_csv(directory / "participation.csv", index=False)
    pd.DataFrame(
        {
            "firm_id": rng.choice(ids, export_rows),
            "year": rng.choice(years, export_rows),
            "destination": rng.choice(_DESTINATIONS, export_rows),
            "export_value_eur": np.round(rng.lognormal(10, 1.5, export_rows), 2),
        }
    ).to_csv(directory / "exports.csv", index=False)
    return directory
