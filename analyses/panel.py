"""Firm-year analysis panel built from the four validated input tables.

``build_firm_year_panel`` turns the register (``firms``), the accounts
(``financials``), the programme records (``participation``) and the
customs-style export records (``exports``) into one row per firm-year present
in ``financials`` for a firm that is in ``firms``.  The staggered DiD estimator
reads nothing else, so every definition that matters for the evaluation lives
here.

Columns
-------
Keys
    ``firm_id``, ``year``.
Outcomes
    ``exporter``            1 if the firm-year's summed export value is > 0, else 0.
    ``export_value_eur``    export value summed over all shipments and destinations
                            (duplicate firm-year-destination rows are shipments and are
                            added up); 0.0 in a non-exporting year.
    ``log_export_value``    ``log1p(export_value_eur)`` (0 for non-exporters, so the
                            extensive margin is part of the outcome).
    ``n_destinations``      number of destinations with a positive summed value.
    ``n_eu_destinations``   how many of those were EU members in that year (membership
                            years from ``data_contracts/countries.csv``: GB until 2019,
                            HR from 2013).
    ``enters_new_market``   1 if the firm exports this year to at least one destination
                            it exported to in no earlier panel year.  In the firm's first
                            panel year there is no history to compare with, so the value
                            is 0 there by convention (not "unknown").
Treatment, for each service ``s`` in ``SERVICES``
    ``first_{s}_year``      calendar year in which the firm's first episode of ``s``
                            started; 0 if the firm never received ``s`` (the code R's
                            ``did`` uses for never-treated units).
    ``{s}_intensity``       the service's total dose over all of the firm's episodes:
                            advisory hours, network events or grant euros (0 if never).
    ``first_service``       service of the firm's earliest episode (by start date); ties
                            on the same start date are broken in the fixed order
                            advisory, network, grant; ``"none"`` if the firm never took
                            part.
    ``first_service_year``  calendar year of that earliest episode; 0 if never.
Covariates
    ``employees``, ``turnover_eur`` as reported; ``log_employees`` and ``log_turnover``
    (``log1p``); ``firm_age`` (``year - founded_year``); ``nace2``, ``region``;
    ``in_cluster`` (0/1).  The ``*_first`` columns (``log_employees_first``,
    ``log_turnover_first``, ``exporter_first``, ``firm_age_first``) repeat the value of
    the firm's first panel year on every row: time-invariant, so a programme that
    starts later cannot have moved them (``BASELINE_COVARIATES``).

Participation and export rows for firm-years outside the panel are ignored (the
contract layer quarantines them before they get here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.contracts.model import load_countries

SERVICES = ("advisory", "network", "grant")
PANEL_OUTCOMES = ("exporter", "n_destinations", "log_export_value", "enters_new_market")
BASELINE_COVARIATES = (
    "log_employees_first",
    "log_turnover_first",
    "exporter_first",
    "in_cluster",
    "firm_age_first",
)
NEVER_TREATED = 0
NO_SERVICE = "none"

SERVICE_DOSE_COLUMN = {
    "advisory": "advisory_hours",
    "network": "network_events",
    "grant": "grant_eur",
}

KEYS = ["firm_id", "year"]

_REQUIRED_COLUMNS = {
    "firms": ("firm_id", "nace2", "region", "founded_year", "in_cluster"),
    "financials": ("firm_id", "year", "employees", "turnover_eur"),
    "participation": ("firm_id", "service", "start_date", *SERVICE_DOSE_COLUMN.values()),
    "exports": ("firm_id", "year", "destination", "export_value_eur"),
}
# Doses may be empty (not applicable); every other required cell must be filled.
_OPTIONAL_CELLS = frozenset(SERVICE_DOSE_COLUMN.values())


def build_firm_year_panel(
    firms: pd.DataFrame,
    financials: pd.DataFrame,
    participation: pd.DataFrame,
    exports: pd.DataFrame,
) -> pd.DataFrame:
    """Return the firm-year panel (columns documented in the module docstring).

    Rows are sorted by ``firm_id`` then ``year``; the index is a fresh RangeIndex.
    """
    tables = {
        "firms": firms,
        "financials": financials,
        "participation": participation,
        "exports": exports,
    }
    for name, table in tables.items():
        _require_columns(name, table)
        _require_filled(name, table)
    _require_unique(firms, ["firm_id"], "firms")
    _require_unique(financials, KEYS, "financials")

    panel = _register_by_accounts(firms, financials)
    panel = _add_export_outcomes(panel, exports)
    panel = _add_treatment(panel, participation)
    panel = _add_first_year_covariates(panel)
    return panel[_column_order()].reset_index(drop=True)


def _column_order() -> list[str]:
    treatment = [c for s in SERVICES for c in (f"first_{s}_year", f"{s}_intensity")]
    return [
        *KEYS,
        "exporter",
        "export_value_eur",
        "log_export_value",
        "n_destinations",
        "n_eu_destinations",
        "enters_new_market",
        *treatment,
        "first_service",
        "first_service_year",
        "employees",
        "turnover_eur",
        "log_employees",
        "log_turnover",
        "log_employees_first",
        "log_turnover_first",
        "exporter_first",
        "firm_age",
        "firm_age_first",
        "nace2",
        "region",
        "in_cluster",
    ]


def _require_columns(name: str, table: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED_COLUMNS[name] if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing required column(s) {missing}")


def _require_filled(name: str, table: pd.DataFrame) -> None:
    for column in _REQUIRED_COLUMNS[name]:
        empty = table[column].isna()
        if column not in _OPTIONAL_CELLS and empty.any():
            raise ValueError(
                f"{name}: row {table.index[empty][0]} column {column!r} is empty "
                f"({int(empty.sum())} such rows; rule: required)"
            )


def _require_unique(table: pd.DataFrame, key: list[str], name: str) -> None:
    duplicated = table.duplicated(key, keep=False)
    if duplicated.any():
        first = table.loc[duplicated, key].iloc[0].to_dict()
        raise ValueError(
            f"{name}: {int(duplicated.sum())} rows share a {'/'.join(key)} key "
            f"(rule: one row per {'-'.join(key)}), e.g. {first}"
        )


def _register_by_accounts(firms: pd.DataFrame, financials: pd.DataFrame) -> pd.DataFrame:
    """Accounts rows joined to the register; accounts of unregistered firms are dropped."""
    register = firms[["firm_id", "nace2", "region", "founded_year", "in_cluster"]]
    panel = financials[["firm_id", "year", "employees", "turnover_eur"]].merge(
        register, on="firm_id", how="inner", validate="many_to_one"
    )
    panel = panel.sort_values(KEYS, kind="stable").reset_index(drop=True)
    panel["employees"] = panel["employees"].astype("int64")
    panel["turnover_eur"] = panel["turnover_eur"].astype("float64")
    panel["log_employees"] = np.log1p(panel["employees"].to_numpy(dtype="float64"))
    panel["log_turnover"] = np.log1p(panel["turnover_eur"].to_numpy())
    panel["firm_age"] = (panel["year"] - panel["founded_year"]).astype("int64")
    panel["in_cluster"] = panel["in_cluster"].astype(bool).astype("int64")
    return panel.drop(columns="founded_year")


def _add_export_outcomes(panel: pd.DataFrame, exports: pd.DataFrame) -> pd.DataFrame:
    """Sum shipments to firm-year-destination, then count markets and new markets."""
    shipments = exports[["firm_id", "year", "destination", "export_value_eur"]].merge(
        panel[KEYS], on=KEYS, how="inner"
    )
    by_market = shipments.groupby(
        ["firm_id", "year", "destination"], as_index=False, sort=False, observed=True
    )["export_value_eur"].sum()
    by_market = by_market[by_market["export_value_eur"] > 0]
    first_year_in_market = by_market.groupby(["firm_id", "destination"], sort=False)[
        "year"
    ].transform("min")
    by_market = by_market.assign(
        new_market=by_market["year"].to_numpy() == first_year_in_market.to_numpy(),
        eu=_eu_member_in_year(by_market["destination"], by_market["year"]),
    )
    per_firm_year = by_market.groupby(KEYS, sort=False).agg(
        export_value_eur=("export_value_eur", "sum"),
        n_destinations=("destination", "size"),
        n_eu_destinations=("eu", "sum"),
        any_new_market=("new_market", "any"),
    )
    panel = panel.merge(per_firm_year, left_on=KEYS, right_index=True, how="left")

    panel["export_value_eur"] = panel["export_value_eur"].fillna(0.0).astype("float64")
    panel["log_export_value"] = np.log1p(panel["export_value_eur"].to_numpy())
    panel["exporter"] = (panel["export_value_eur"] > 0).astype("int64")
    for count in ("n_destinations", "n_eu_destinations"):
        panel[count] = panel[count].fillna(0).astype("int64")
    is_first_panel_year = ~panel["firm_id"].duplicated()
    new_market = panel["any_new_market"].eq(True)
    panel["enters_new_market"] = (new_market & ~is_first_panel_year).astype("int64")
    return panel.drop(columns="any_new_market")


def _eu_member_in_year(destination: pd.Series, year: pd.Series) -> np.ndarray:
    """Membership in the year of export, so the UK counts as EU before Brexit."""
    countries = load_countries().set_index("iso2")
    joined, left = (
        destination.map(countries[column].astype("float64")).to_numpy()
        for column in ("eu_member_from", "eu_member_until")
    )
    year = year.to_numpy()
    return (joined <= year) & ~(left <= year)


def _add_treatment(panel: pd.DataFrame, participation: pd.DataFrame) -> pd.DataFrame:
    """Per service: first start year and summed dose; plus the firm's first service."""
    episodes = participation[participation["firm_id"].isin(panel["firm_id"].unique())]
    _require_known_services(episodes)

    service_rank = episodes["service"].map({s: i for i, s in enumerate(SERVICES)})
    dose = np.select(
        [episodes["service"].to_numpy() == s for s in SERVICES],
        [episodes[c].to_numpy(dtype="float64") for c in SERVICE_DOSE_COLUMN.values()],
    )
    episodes = pd.DataFrame(
        {
            "firm_id": episodes["firm_id"].to_numpy(),
            "service": episodes["service"].to_numpy(),
            "service_rank": service_rank.to_numpy(),
            "start_date": episodes["start_date"].to_numpy(),
            "start_year": episodes["start_date"].dt.year.to_numpy(dtype="int64"),
            "dose": np.nan_to_num(dose, nan=0.0),
        }
    )

    per_service = episodes.groupby(["firm_id", "service"], sort=False).agg(
        first_year=("start_year", "min"), intensity=("dose", "sum")
    )
    first_year = per_service["first_year"].unstack("service").reindex(columns=list(SERVICES))
    intensity = per_service["intensity"].unstack("service").reindex(columns=list(SERVICES))
    treatment = pd.DataFrame(
        {
            column: values[s]
            for s in SERVICES
            for column, values in ((f"first_{s}_year", first_year), (f"{s}_intensity", intensity))
        },
        index=first_year.index,
    )

    first_episode = episodes.sort_values(
        ["firm_id", "start_date", "service_rank"], kind="stable"
    ).drop_duplicates("firm_id")
    treatment = treatment.join(
        first_episode.set_index("firm_id")[["service", "start_year"]].rename(
            columns={"service": "first_service", "start_year": "first_service_year"}
        )
    )

    panel = panel.merge(treatment, left_on="firm_id", right_index=True, how="left")
    for s in SERVICES:
        panel[f"first_{s}_year"] = panel[f"first_{s}_year"].fillna(NEVER_TREATED).astype("int64")
        panel[f"{s}_intensity"] = panel[f"{s}_intensity"].fillna(0.0).astype("float64")
    panel["first_service"] = panel["first_service"].fillna(NO_SERVICE).astype(object)
    panel["first_service_year"] = (
        panel["first_service_year"].fillna(NEVER_TREATED).astype("int64")
    )
    return panel


def _require_known_services(episodes: pd.DataFrame) -> None:
    unknown = ~episodes["service"].isin(SERVICES)
    if unknown.any():
        row = episodes.index[unknown][0]
        raise ValueError(
            f"participation: row {row} column 'service' has {episodes.at[row, 'service']!r} "
            f"(rule: one of {list(SERVICES)})"
        )


def _add_first_year_covariates(panel: pd.DataFrame) -> pd.DataFrame:
    """Copy first-panel-year values onto every row of the firm (rows are sorted)."""
    first_rows = panel.loc[
        ~panel["firm_id"].duplicated(),
        ["firm_id", "log_employees", "log_turnover", "exporter", "firm_age"],
    ]
    first_values = first_rows.rename(
        columns={c: f"{c}_first" for c in first_rows.columns if c != "firm_id"}
    )
    return panel.merge(first_values, on="firm_id", how="left", validate="many_to_one")
