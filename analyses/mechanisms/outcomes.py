"""Panel columns the mechanism models need beyond ``analyses.panel``: persistence outcomes and bundles.

Persistence (internationalisation as a learning process), defined for **every** firm-year so that a
DiD on them compares like with like and never conditions on a post-programme outcome:

* ``sustained_exporter``: 1 if the firm exported in each of t-2, t-1 and t, else 0;
* ``spell_survives_k`` (k = 1, 2, 3): 1 if the firm started exporting in t-k (no exports in t-k-1,
  exports in t-k) and has exported in every year since, through t; else 0. Its DiD is the effect of
  support on the probability of holding a k-year-old export spell -- entry times survival -- which is
  identified by parallel trends. The survival rate among entrants (conditional on entering, itself an
  outcome of the programme) is deliberately not estimated: supported entrants and unsupported entrants
  differ in who enters, so their comparison is not causal. The ratio of the ``spell_survives_k`` and
  ``starts_exporting`` effects is reported only as a descriptive reading.

Both are missing when any year they look at is not a panel year of the firm covered by the customs extract.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SPELL_YEARS = (1, 2, 3)
PERSISTENCE_OUTCOMES = ("sustained_exporter", *(f"spell_survives_{k}" for k in SPELL_YEARS))


def _lagged(panel: pd.DataFrame, column: str, lag: int) -> np.ndarray:
    """``column`` of the same firm in year t - lag (NaN when that firm-year is not in the panel)."""
    earlier = panel[["firm_id", "year", column]].assign(year=panel["year"] + lag)
    return panel[["firm_id", "year"]].merge(earlier, on=["firm_id", "year"], how="left")[column].to_numpy(dtype=float)


def add_persistence_outcomes(panel: pd.DataFrame) -> pd.DataFrame:
    """``panel`` with ``PERSISTENCE_OUTCOMES`` added (float: 1, 0 or NaN); needs ``firm_id, year, exporter``."""
    exporter = {lag: _lagged(panel, "exporter", lag) if lag else panel["exporter"].to_numpy(dtype=float)
                for lag in range(max(SPELL_YEARS) + 2)}
    out = panel.copy()

    def known(lags):
        return np.all([np.isfinite(exporter[lag]) for lag in lags], axis=0)

    all_export = np.all([exporter[lag] == 1 for lag in (0, 1, 2)], axis=0)
    out["sustained_exporter"] = np.where(known((0, 1, 2)), all_export.astype(float), np.nan)
    for k in SPELL_YEARS:
        lags = range(k + 2)
        spell = (exporter[k + 1] == 0) & np.all([exporter[lag] == 1 for lag in range(k + 1)], axis=0)
        out[f"spell_survives_{k}"] = np.where(known(lags), spell.astype(float), np.nan)
    return out


def bundle_starts(participation: pd.DataFrame, window_months: int = 12) -> pd.DataFrame:
    """Firms whose first episode is followed within ``window_months`` by a different service: their bundle.

    ``participation``: clean episodes (``firm_id, service, start_date``). Returns one row per such firm:
    ``firm_id``, ``bundle`` (the two services, alphabetical, joined by ``+``), ``bundle_year`` (year of
    the first episode, the cohort).
    """
    episodes = participation[["firm_id", "service", "start_date"]].dropna().sort_values(["firm_id", "start_date"],
                                                                                        kind="stable")
    first = episodes.groupby("firm_id").first()
    joined = episodes.join(first, on="firm_id", rsuffix="_first")
    window = joined["start_date_first"] + pd.DateOffset(months=window_months)
    second = joined.loc[(joined["service"] != joined["service_first"]) & (joined["start_date"] <= window)]
    second = second.groupby("firm_id").first()
    bundle = [("+".join(sorted((a, b)))) for a, b in zip(second["service_first"], second["service"])]
    return pd.DataFrame({"firm_id": second.index, "bundle": bundle,
                         "bundle_year": second["start_date_first"].dt.year.to_numpy()}).reset_index(drop=True)
