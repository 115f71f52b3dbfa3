"""Firm-year analysis panel built from the four validated input tables.

``build_firm_year_panel`` turns the register (``firms``), the accounts
(``financials``), the programme records (``participation``) and the
customs-style export records (``exports``) into one row per firm-year present
in ``financials`` for a firm that is in ``firms``.  The staggered DiD estimator
reads nothing else, so every definition that matters for the evaluation lives
here.  Beside the panel it returns a :class:`PanelAccount`: every input row
either entered the panel or is counted with the reason it did not, and which
years the customs extract covers.

Columns
-------
Every column, in order, with its definition is in ``PANEL_COLUMNS`` (rendered into
``data_contracts/DATA_DICTIONARY.md``).  In brief: keys ``firm_id``, ``year``; yearly export
outcomes (missing, NaN, in years the customs extract does not cover); outcomes over a fixed
look-back window of ``k = lookback_years`` years (``WINDOW_OUTCOMES``; missing unless t-k..t-1
are all panel years of the firm that the extract covers, so their rates do not depend on how
long a firm has been observed); per service its first year, the dose of its first episode and
its summed dose; covariates as they stand each year (``TIME_VARYING_COVARIATES``, which the
estimator reads in each comparison's base period) and first-panel-year snapshots (``*_first``,
``BASELINE_COVARIATES``).

Export coverage
    "A firm-year without an export row is a non-exporting year" holds only for years the
    customs extract covers.  A year is not covered when it has no export row at all, or
    when its share of exporting firms (among firms with accounts that year) is below
    ``exportCoverageMinRatio`` (exports contract) times the median share of the up to two
    years on each side that have export rows.  Its export outcomes are missing, its export
    rows are counted out, and if no year is covered the build stops.

Rows that cannot enter the panel (accounts of unregistered firms, episodes and exports of
firms without accounts, exports of firm-years without accounts, exports of uncovered years,
episodes after the last accounts year) are counted in ``PanelAccount.table``, never dropped
silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.contracts.model import SOURCES, load_contract, load_countries

SERVICES = ("advisory", "network", "grant")
#: default look-back window (years) of the new-market outcomes
LOOKBACK_YEARS = 3
#: years of exporting counted by ``years_exported_last3`` (t-3..t-1) and ``years_exported_3y`` (t-2..t)
PRIOR_EXPORT_YEARS = 3
WINDOW_OUTCOMES = (
    "enters_new_market",
    "starts_exporting",
    "new_destination",
    "new_eu_destination",
    "new_non_eu_destination",
)
#: outcomes a plan can name (``log_export_value`` is a panel column but never an outcome: see
#: ``analyses.evaluation.EvaluationPlan``; export value is the value family's, by Poisson)
PANEL_OUTCOMES = ("exporter", "n_destinations", *WINDOW_OUTCOMES)
#: covariates as they stand in each year; ``att_gt`` reads them in each comparison's base period, so
#: read in the base year g-1 ``exporter`` is "exported in g-1" and ``years_exported_3y`` "years
#: exported in g-3..g-1" (the issue's prior-exporting history)
TIME_VARYING_COVARIATES = (
    "log_employees",
    "log_turnover",
    "firm_age",
    "exporter",
    "years_exported_3y",
    "in_cluster",
)
#: the first-year snapshot of a measure (``in_cluster`` does not vary: it is its own snapshot)
FIRST_YEAR_COLUMN = {
    "log_employees": "log_employees_first",
    "log_turnover": "log_turnover_first",
    "firm_age": "firm_age_first",
    "exporter": "exporter_first",
    "in_cluster": "in_cluster",
}
BASELINE_COVARIATES = (
    "log_employees_first",
    "log_turnover_first",
    "exporter_first",
    "in_cluster",
    "firm_age_first",
)
NEVER_TREATED = 0
NO_SERVICE = "none"
#: export-based columns of one year: missing in years the customs extract does not cover
YEAR_EXPORT_OUTCOMES = (
    "exporter",
    "export_value_eur",
    "log_export_value",
    "n_destinations",
    "n_eu_destinations",
    "n_non_eu_destinations",
)
EXPORT_OUTCOMES = (*YEAR_EXPORT_OUTCOMES, *WINDOW_OUTCOMES)
COVERAGE_PROPERTY = "exportCoverageMinRatio"
#: how many years on each side form a year's neighbourhood for the coverage rule
COVERAGE_NEIGHBOURS = 2

# What became of an input row (``PanelAccount.table``: status "used" or "left out", and the reason).
USED, LEFT_OUT = "used", "left out"
REASON_IN_PANEL = "in the panel"
REASON_ALREADY_TREATED = (
    "in the panel; support started before the first accounts year, so the firm is already treated "
    "(in no cohort and no comparison group)"
)
REASON_NOT_REGISTERED = "firm not in the register (firms)"
REASON_NO_ACCOUNTS = "firm has no accounts rows (financials)"
REASON_NO_FIRM_YEAR = "no accounts row for this firm and year"
REASON_AFTER_PANEL = (
    "support started after the last accounts year: treated after the sample, so untreated in the panel "
    "years (as R did)"
)
REASON_UNCOVERED = "year not covered by the customs extract: export outcomes missing, not zero"
ACCOUNT_COLUMNS = ("source", "status", "reason", "rows", "firms")
COVERAGE_COLUMNS = (
    "year", "firm_years", "export_rows", "exporting_firms", "exporter_share", "neighbour_share", "covered", "reason",
)

_WINDOW = "Missing unless t-k..t-1 (k = `lookback_years`, default 3) are all panel years of the firm covered by the customs extract."
_DOSE_UNIT = {"advisory": "advisory hours", "network": "network events", "grant": "grant euros"}
#: every panel column, in order, with its definition (the data dictionary's panel section)
PANEL_COLUMNS: dict[str, str] = {
    "firm_id": "Firm identifier (text, as delivered).",
    "year": "Calendar year of the accounts row.",
    "exporter": "1 if the firm's export value summed over shipments and destinations is > 0, else 0. Also a "
    "time-varying covariate: read in the base year g-1, whether the firm exported in g-1.",
    "export_value_eur": "Export value in euros, summed over all shipments and destinations; 0 in a year without exports.",
    "log_export_value": "log(1 + export_value_eur): 0 for non-exporters, so entry is part of it. Descriptive only, "
    "never an evaluation outcome (the plan refuses it); export value effects come from the value family (Poisson).",
    "n_destinations": "Number of destinations served (positive summed value).",
    "n_eu_destinations": "Destinations that were EU members in that year (`countries.csv`; the United Kingdom counts "
    "as EU through 2020, the last year of the single market).",
    "n_non_eu_destinations": "Destinations that were not EU members in that year.",
    "enters_new_market": "1 if the firm serves at t a destination it served in none of t-k..t-1, else 0: a start, a "
    "new destination of a current exporter, or a restart after a pause shorter than k years. " + _WINDOW,
    "starts_exporting": "1 if the firm exports at t after exporting in none of t-k..t-1, else 0. " + _WINDOW,
    "new_destination": "1 if the firm exported at t-1 and serves at t a destination it served in none of t-k..t-1, "
    "else 0 (diversification by a current exporter). " + _WINDOW,
    "new_eu_destination": "As `new_destination`, counting only destinations that are EU members in year t. " + _WINDOW,
    "new_non_eu_destination": "As `new_destination`, counting only destinations outside the EU in year t. " + _WINDOW,
    "exports_covered": "1 if the customs extract covers the year, else 0 (export outcomes are missing, not zero, "
    "in uncovered years).",
    **{
        column: definition
        for s in SERVICES
        for column, definition in (
            (f"first_{s}_year", f"Year the firm's first {s} episode started; 0 if never (R `did`'s code for never "
             "treated). Episodes after the last accounts year are ignored (untreated in the panel, as R `did`)."),
            (f"{s}_first_dose", f"Dose of the firm's first {s} episode ({_DOSE_UNIT[s]}; episodes starting on the "
             "same first day are added up), known when support starts; 0 if never. The dose for dose-response work."),
            (f"{s}_intensity", f"Total {s} dose over all the firm's episodes ({_DOSE_UNIT[s]}), later, "
             "post-treatment episodes included (so it can respond to outcomes); 0 if never."),
        )
    },
    "first_service": "Service of the firm's earliest episode (ties on one start date: advisory, network, grant); "
    "`none` if the firm never took part.",
    "first_service_year": "Year of that earliest episode; 0 if never.",
    "employees": "Employees as reported.",
    "turnover_eur": "Turnover in euros as reported.",
    "log_employees": "log(1 + employees) in the year (time-varying covariate).",
    "log_turnover": "log(1 + turnover_eur) in the year (time-varying covariate).",
    "log_employees_first": "log_employees in the firm's first panel year, on every row (first-year snapshot).",
    "log_turnover_first": "log_turnover in the firm's first panel year, on every row (first-year snapshot).",
    "exporter_first": "exporter in the firm's first panel year covered by the customs extract, on every row.",
    "firm_age": "year - founded_year (time-varying covariate).",
    "firm_age_first": "firm_age in the firm's first panel year, on every row.",
    "exported_last_year": "1 if the firm exported in t-1, else 0; missing if t-1 is not a panel year of the firm "
    "covered by the customs extract.",
    "years_exported_last3": "Number of years with exports in t-3..t-1 (0-3); missing unless all three are panel "
    "years of the firm covered by the customs extract.",
    "years_exported_3y": "Number of years with exports in t-2..t (0-3); missing unless all three are panel years of "
    "the firm covered by the customs extract (time-varying covariate: read in the base year g-1, the years "
    "exported in g-3..g-1).",
    "nace2": "NACE Rev.2 division (register).",
    "region": "NUTS-2 region (register).",
    "in_cluster": "1 if the firm is a cluster member (register; constant over time).",
}

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


@dataclass
class PanelAccount:
    """Where every clean input row went, and which years the customs extract covers.

    ``table`` has one row per source, status (``"used"``/``"left out"``) and reason, with the
    number of input ``rows`` and distinct ``firms`` (columns ``ACCOUNT_COLUMNS``, sources in
    ``SOURCES`` order, used before left out). ``rows_clean`` is the number of rows each source
    delivered to the builder, counted independently of the table so :meth:`check_accounting`
    can catch a row that went missing. ``coverage`` has one row per panel year
    (``COVERAGE_COLUMNS``; shares are fractions of firms with accounts that year).
    """

    table: pd.DataFrame
    rows_clean: dict[str, int]
    coverage: pd.DataFrame
    #: the look-back window the panel's new-market outcomes were built with
    lookback_years: int = LOOKBACK_YEARS

    @property
    def uncovered_years(self) -> list[int]:
        return [int(year) for year in self.coverage.loc[~self.coverage["covered"].astype(bool), "year"]]

    def check_accounting(self) -> None:
        """Raise if, for some source, the rows used plus the rows counted out differ from the clean rows."""
        for source, clean in self.rows_clean.items():
            rows = self.table.loc[self.table["source"] == source, "rows"]
            if int(rows.sum()) != clean:
                used = int(self.table.loc[(self.table["source"] == source) & (self.table["status"] == USED), "rows"].sum())
                raise RuntimeError(
                    f"{source}: panel accounting does not add up: {clean} clean rows, but {used} used + "
                    f"{int(rows.sum()) - used} counted out = {int(rows.sum())}"
                )


@dataclass
class PanelBuild:
    """What :func:`build_firm_year_panel` returns: the panel and the account of its inputs."""

    panel: pd.DataFrame
    account: PanelAccount


def export_coverage_min_ratio() -> float:
    """The coverage threshold stated in the exports contract (``exportCoverageMinRatio``)."""
    contract = load_contract("exports")
    if COVERAGE_PROPERTY not in contract.custom_properties:
        raise ValueError(f"{contract.path}: customProperties lacks {COVERAGE_PROPERTY} (export coverage threshold)")
    return float(contract.custom_properties[COVERAGE_PROPERTY])


def build_firm_year_panel(
    firms: pd.DataFrame,
    financials: pd.DataFrame,
    participation: pd.DataFrame,
    exports: pd.DataFrame,
    coverage_min_ratio: float | None = None,
    lookback_years: int = LOOKBACK_YEARS,
) -> PanelBuild:
    """Return the firm-year panel (columns documented in the module docstring) and its account.

    Panel rows are sorted by ``firm_id`` then ``year``; the index is a fresh RangeIndex.
    ``coverage_min_ratio`` defaults to the exports contract's ``exportCoverageMinRatio``;
    ``lookback_years`` is the window k of the new-market outcomes (the evaluation plan's key).
    Raises ``ValueError`` naming source, row, column and rule for unusable input, for a
    ``lookback_years`` that is not a whole number >= 1, and when no accounts year is covered by
    the customs extract.
    """
    if isinstance(lookback_years, bool) or not isinstance(lookback_years, (int, np.integer)) or lookback_years < 1:
        raise ValueError(f"lookback_years must be a whole number of years >= 1, got {lookback_years!r}")
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
    if coverage_min_ratio is None:
        coverage_min_ratio = export_coverage_min_ratio()

    panel = _register_by_accounts(firms, financials)
    if panel.empty:
        raise ValueError("financials: no accounts row belongs to a firm in the register (firms); the panel is empty")
    coverage = _export_coverage(panel, exports, coverage_min_ratio)
    covered_years = coverage.loc[coverage["covered"], "year"]
    panel, by_market = _add_export_outcomes(panel, exports, covered_years)
    panel = _add_history(panel, by_market, int(lookback_years))
    panel = _add_treatment(panel, participation)
    panel = _add_first_year_covariates(panel)
    account = PanelAccount(
        table=_account_table(tables, panel, covered_years),
        rows_clean={name: len(table) for name, table in tables.items()},
        coverage=coverage,
        lookback_years=int(lookback_years),
    )
    account.check_accounting()
    return PanelBuild(panel=panel[list(PANEL_COLUMNS)].reset_index(drop=True), account=account)


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


def _export_coverage(panel: pd.DataFrame, exports: pd.DataFrame, min_ratio: float) -> pd.DataFrame:
    """One row per panel year: exporting firms among firms with accounts, and whether the extract covers it."""
    matched = exports[["firm_id", "year", "export_value_eur"]].merge(panel[KEYS], on=KEYS, how="inner")
    years = np.sort(panel["year"].unique())
    per_firm_year = matched.groupby(KEYS, sort=False)["export_value_eur"].sum()
    exporting = (per_firm_year > 0).groupby(level="year").sum().reindex(years, fill_value=0)
    coverage = pd.DataFrame(
        {
            "year": years,
            "firm_years": panel.groupby("year").size().reindex(years).to_numpy(),
            "export_rows": matched.groupby("year").size().reindex(years, fill_value=0).to_numpy(),
            "exporting_firms": exporting.to_numpy(),
        }
    )
    coverage["exporter_share"] = coverage["exporting_firms"] / coverage["firm_years"]
    has_rows = coverage["export_rows"].to_numpy() > 0
    shares = coverage["exporter_share"].to_numpy()
    neighbour = np.full(len(years), np.nan)
    for i, year in enumerate(years):
        near = has_rows & (np.abs(years - year) <= COVERAGE_NEIGHBOURS) & (years != year)
        if near.any():
            neighbour[i] = np.median(shares[near])
    coverage["neighbour_share"] = neighbour
    too_few = has_rows & (neighbour > 0) & (shares < min_ratio * np.nan_to_num(neighbour))
    coverage["covered"] = has_rows & ~too_few
    coverage["reason"] = [
        f"no export rows for {year}" if not rows else
        f"{n} exporting firms ({share:.1%} of firms with accounts) against {reference:.1%} in the neighbouring "
        f"years; below {min_ratio:.0%} of that (exports contract, {COVERAGE_PROPERTY})" if few else ""
        for year, rows, few, n, share, reference in zip(
            years, has_rows, too_few, coverage["exporting_firms"], shares, neighbour
        )
    ]
    if not coverage["covered"].any():
        raise ValueError(
            f"exports: no year of the accounts ({years[0]}-{years[-1]}) is covered by the customs extract "
            f"({'; '.join(coverage['reason'])}); export outcomes cannot be built, so nothing can be estimated "
            f"(rule: customProperties {COVERAGE_PROPERTY})"
        )
    return coverage[list(COVERAGE_COLUMNS)]


def _add_export_outcomes(
    panel: pd.DataFrame, exports: pd.DataFrame, covered_years: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sum shipments to firm-year-destination, then count markets, in covered years.

    Uncovered years get missing outcomes (the implicit zero only holds where the extract covers the
    year). Also returns the served markets (``firm_id, year, destination, eu``; positive value, covered
    years of panel firm-years) for the window outcomes.
    """
    shipments = exports[["firm_id", "year", "destination", "export_value_eur"]].merge(
        panel[KEYS], on=KEYS, how="inner"
    )
    shipments = shipments[shipments["year"].isin(covered_years)]
    by_market = shipments.groupby(
        ["firm_id", "year", "destination"], as_index=False, sort=False, observed=True
    )["export_value_eur"].sum()
    by_market = by_market[by_market["export_value_eur"] > 0]
    by_market = by_market.assign(eu=_eu_member_in_year(by_market["destination"], by_market["year"]))
    per_firm_year = by_market.groupby(KEYS, sort=False).agg(
        export_value_eur=("export_value_eur", "sum"),
        n_destinations=("destination", "size"),
        n_eu_destinations=("eu", "sum"),
    )
    panel = panel.merge(per_firm_year, left_on=KEYS, right_index=True, how="left")

    panel["exports_covered"] = panel["year"].isin(covered_years).astype("int64")
    panel["export_value_eur"] = panel["export_value_eur"].fillna(0.0).astype("float64")
    panel["log_export_value"] = np.log1p(panel["export_value_eur"].to_numpy())
    panel["exporter"] = (panel["export_value_eur"] > 0).astype("int64")
    for count in ("n_destinations", "n_eu_destinations"):
        panel[count] = panel[count].fillna(0).astype("int64")
    panel["n_non_eu_destinations"] = panel["n_destinations"] - panel["n_eu_destinations"]

    uncovered = panel["exports_covered"].eq(0)
    if uncovered.any():
        panel[list(YEAR_EXPORT_OUTCOMES)] = panel[list(YEAR_EXPORT_OUTCOMES)].astype("float64")
        panel.loc[uncovered, list(YEAR_EXPORT_OUTCOMES)] = np.nan
    return panel, by_market[["firm_id", "year", "destination", "eu"]]


def _add_history(panel: pd.DataFrame, by_market: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """Window outcomes (``WINDOW_OUTCOMES``) and prior-exporting covariates; missing without the history.

    History is a firm x calendar-year grid of "observed" (a panel year the customs extract covers) and
    "exported"; a window counts only if every one of its years is observed.
    """
    firm_code, firm_ids = pd.factorize(panel["firm_id"])
    first_year = int(panel["year"].min())
    year_code = (panel["year"] - first_year).to_numpy()
    shape = (len(firm_ids), int(panel["year"].max()) - first_year + 1)
    observed = np.zeros(shape)
    exported = np.zeros(shape)
    covered = panel["exports_covered"].to_numpy() == 1
    observed[firm_code, year_code] = covered
    exported[firm_code, year_code] = np.where(covered, panel["exporter"].fillna(0).to_numpy(), 0)

    def trailing(matrix: np.ndarray, width: int) -> np.ndarray:
        """Per panel row: the sum of ``matrix`` over the ``width`` years before the row's year."""
        padded = np.concatenate([np.zeros((shape[0], width + 1)), matrix], axis=1).cumsum(axis=1)
        return padded[firm_code, year_code + width] - padded[firm_code, year_code]

    def where_known(values: np.ndarray, known: np.ndarray) -> np.ndarray:
        return np.where(known, values.astype("float64"), np.nan)

    before = trailing(exported, 1)
    panel["exported_last_year"] = where_known(before, trailing(observed, 1) == 1)
    panel["years_exported_last3"] = where_known(
        trailing(exported, PRIOR_EXPORT_YEARS), trailing(observed, PRIOR_EXPORT_YEARS) == PRIOR_EXPORT_YEARS
    )
    through_t = PRIOR_EXPORT_YEARS - 1  # the year itself and the two before it
    panel["years_exported_3y"] = where_known(
        trailing(exported, through_t) + exported[firm_code, year_code],
        (trailing(observed, through_t) == through_t) & covered,
    )

    # a market served at t is new if the firm served it in none of t-k..t-1
    recent = pd.concat(
        [by_market[["firm_id", "destination"]].assign(year=by_market["year"] + lag) for lag in range(1, lookback + 1)]
    )
    keys = ["firm_id", "year", "destination"]
    is_new = ~pd.MultiIndex.from_frame(by_market[keys]).isin(pd.MultiIndex.from_frame(recent[keys]))
    new = by_market.loc[is_new]
    new_markets = pd.DataFrame(
        {"any": True, "eu": new["eu"].to_numpy(), "non_eu": ~new["eu"].to_numpy()},
        index=pd.MultiIndex.from_frame(new[KEYS]),
    ).groupby(level=KEYS).any()
    new_markets = new_markets.reindex(pd.MultiIndex.from_frame(panel[KEYS]), fill_value=False)

    known = covered & (trailing(observed, lookback) == lookback)
    exporting = panel["exporter"].fillna(0).to_numpy() == 1
    was_exporting = before == 1
    panel["enters_new_market"] = where_known(new_markets["any"].to_numpy(), known)
    panel["starts_exporting"] = where_known(exporting & (trailing(exported, lookback) == 0), known)
    panel["new_destination"] = where_known(was_exporting & new_markets["any"].to_numpy(), known)
    panel["new_eu_destination"] = where_known(was_exporting & new_markets["eu"].to_numpy(), known)
    panel["new_non_eu_destination"] = where_known(was_exporting & new_markets["non_eu"].to_numpy(), known)
    return panel


def _eu_member_in_year(destination: pd.Series, year: pd.Series) -> np.ndarray:
    """Membership in the year of export, so the UK counts as EU through 2020 (``countries.csv``)."""
    countries = load_countries().set_index("iso2")
    joined, left = (
        destination.map(countries[column].astype("float64")).to_numpy()
        for column in ("eu_member_from", "eu_member_until")
    )
    year = year.to_numpy()
    return (joined <= year) & ~(left <= year)


def _add_treatment(panel: pd.DataFrame, participation: pd.DataFrame) -> pd.DataFrame:
    """Per service: first start year, first episode's dose and summed dose; plus the firm's first service.

    Episodes starting after the last accounts year are left out (untreated in the panel years).
    """
    episodes = participation[participation["firm_id"].isin(panel["firm_id"].unique())]
    _require_known_services(episodes)
    episodes = episodes[episodes["start_date"].dt.year <= panel["year"].max()]

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

    first_start = episodes.groupby(["firm_id", "service"], sort=False)["start_date"].transform("min")
    episodes["first_dose"] = np.where(episodes["start_date"].eq(first_start), episodes["dose"], 0.0)
    per_service = episodes.groupby(["firm_id", "service"], sort=False).agg(
        first_year=("start_year", "min"), first_dose=("first_dose", "sum"), intensity=("dose", "sum")
    )
    wide = {name: per_service[name].unstack("service").reindex(columns=list(SERVICES)) for name in per_service}
    treatment = pd.DataFrame(
        {
            column: wide[name][s]
            for s in SERVICES
            for column, name in (
                (f"first_{s}_year", "first_year"), (f"{s}_first_dose", "first_dose"), (f"{s}_intensity", "intensity")
            )
        },
        index=wide["first_year"].index,
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
        for dose in (f"{s}_first_dose", f"{s}_intensity"):
            panel[dose] = panel[dose].fillna(0.0).astype("float64")
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
    """Copy first-panel-year values onto every row of the firm (rows are sorted).

    Export status comes from the firm's first panel year the customs extract covers.
    """
    first_rows = panel.loc[
        ~panel["firm_id"].duplicated(),
        ["firm_id", "log_employees", "log_turnover", "firm_age"],
    ]
    covered = panel.loc[panel["exports_covered"].eq(1), ["firm_id", "exporter"]]
    first_rows = first_rows.merge(covered.drop_duplicates("firm_id"), on="firm_id", how="left")
    first_values = first_rows.rename(
        columns={c: f"{c}_first" for c in first_rows.columns if c != "firm_id"}
    )
    return panel.merge(first_values, on="firm_id", how="left", validate="many_to_one")


def _account_table(tables: dict[str, pd.DataFrame], panel: pd.DataFrame, covered_years: pd.Series) -> pd.DataFrame:
    """Status and reason of every input row, tallied per source (rows and distinct firms)."""
    registered = tables["firms"]["firm_id"]
    in_panel = panel["firm_id"].drop_duplicates()
    first_year, last_year = int(panel["year"].min()), int(panel["year"].max())

    def firm_reason(firm_ids: pd.Series) -> np.ndarray:
        """Why a row of a firm outside the panel is left out ('' for firms in the panel)."""
        return np.select(
            [firm_ids.isin(in_panel), firm_ids.isin(registered)], ["", REASON_NO_ACCOUNTS], REASON_NOT_REGISTERED
        )

    financials = tables["financials"]
    participation = tables["participation"]
    start_year = participation["start_date"].dt.year
    already_treated = participation.loc[start_year < first_year, "firm_id"]
    exports = tables["exports"]
    firm_year = pd.MultiIndex.from_frame(panel[KEYS])
    reasons = {
        "firms": firm_reason(registered),
        "financials": np.where(financials["firm_id"].isin(registered), "", REASON_NOT_REGISTERED),
        "participation": np.where(
            (firm_reason(participation["firm_id"]) == "") & (start_year.to_numpy() > last_year),
            REASON_AFTER_PANEL,
            firm_reason(participation["firm_id"]),
        ),
        "exports": np.select(
            [
                pd.MultiIndex.from_frame(exports[KEYS]).isin(firm_year),
                exports["firm_id"].isin(in_panel).to_numpy(),
            ],
            [np.where(exports["year"].isin(covered_years), "", REASON_UNCOVERED), REASON_NO_FIRM_YEAR],
            firm_reason(exports["firm_id"]),
        ),
    }
    in_panel_reason = {"participation": np.where(participation["firm_id"].isin(already_treated),
                                                 REASON_ALREADY_TREATED, REASON_IN_PANEL)}
    tallies = []
    for source in SOURCES:
        table = tables[source]
        reason = np.asarray(reasons[source], dtype=object)
        used = reason == ""
        reason[used] = np.broadcast_to(in_panel_reason.get(source, REASON_IN_PANEL), len(reason))[used]
        tally = (
            pd.DataFrame({"firm_id": table["firm_id"].to_numpy(), "used": used, "reason": reason})
            .groupby(["used", "reason"], sort=False)["firm_id"]
            .agg(rows="size", firms="nunique")
            .reset_index()
            .sort_values(["used", "rows"], ascending=[False, False], kind="stable")
        )
        tallies.append(tally.assign(source=source, status=np.where(tally["used"], USED, LEFT_OUT)))
    account = pd.concat(tallies, ignore_index=True)
    account[["rows", "firms"]] = account[["rows", "firms"]].astype("int64")
    return account[list(ACCOUNT_COLUMNS)]
