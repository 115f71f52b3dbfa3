"""Synthetic deliveries for the panel's window outcomes: a stationary export process.

Each firm serves each destination of a fixed list in a two-state Markov chain (keep a market with
probability ``KEEP``, enter it with a firm-specific probability), run for ``BURN_IN`` years before
the first panel year so the process is stationary: the true rate of entering a market does not
depend on the calendar year or on how long the firm has been observed.
"""

import numpy as np
import pandas as pd

DESTINATIONS = ("FR", "PL", "IT", "NL", "US", "CN", "CH", "NO")
KEEP = 0.7
BURN_IN = 30
PARTICIPATION_COLUMNS = ["firm_id", "programme", "service", "start_date", "end_date",
                         "advisory_hours", "grant_eur", "network_events"]


def no_participation() -> pd.DataFrame:
    frame = pd.DataFrame(columns=PARTICIPATION_COLUMNS)
    frame["start_date"] = pd.to_datetime(frame["start_date"])
    frame["end_date"] = pd.to_datetime(frame["end_date"])
    return frame.astype({c: "float64" for c in ("advisory_hours", "grant_eur", "network_events")})


def stationary_exporters(n_firms=3_000, years=range(2012, 2025), first_years=None, seed=1,
                         extra_entry=None):
    """Four input tables of firms whose market entry is stationary.

    ``first_years`` (one per firm, default: the first panel year) is when a firm's accounts start,
    so the register is unbalanced and firms are observed for different numbers of years.
    ``extra_entry(firm_index, year)`` returns an additional entry probability (a planted effect).
    """
    rng = np.random.default_rng(seed)
    years = np.asarray(list(years))
    ids = np.array([f"S{i:05d}" for i in range(n_firms)], dtype=object)
    first_years = np.full(n_firms, years[0]) if first_years is None else np.asarray(first_years)
    enter = rng.uniform(0.0, 0.12, n_firms)
    served = np.zeros((n_firms, len(DESTINATIONS)), dtype=bool)
    rows = []
    for year in range(years[0] - BURN_IN, years[-1] + 1):
        extra = extra_entry(np.arange(n_firms), year) if extra_entry is not None else 0.0
        p = np.where(served, KEEP, np.clip(enter + extra, 0, 1)[:, None])
        served = rng.random(served.shape) < p
        if year >= years[0]:
            firm, market = np.nonzero(served & (year >= first_years)[:, None])
            rows.append(pd.DataFrame({"firm_id": ids[firm], "year": year,
                                      "destination": np.asarray(DESTINATIONS)[market],
                                      "export_value_eur": 100.0}))
    firms = pd.DataFrame({"firm_id": ids, "nace2": "25", "region": "DE11", "founded_year": 2000,
                          "in_cluster": False})
    observed = years[None, :] >= first_years[:, None]
    firm, year = np.nonzero(observed)
    financials = pd.DataFrame({"firm_id": ids[firm], "year": years[year], "employees": 10, "turnover_eur": 1e6})
    return firms, financials, no_participation(), pd.concat(rows, ignore_index=True)
