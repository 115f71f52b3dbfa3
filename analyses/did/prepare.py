"""Validation and reshaping of the long panel before group-time estimation.

Mirrors R ``did``'s ``pre_process_did`` decisions (which units are never treated,
which cohorts are dropped, which periods survive) but raises clear errors where R
silently rebalances, so a data problem is visible in the pipeline.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy


@dataclass
class PreparedPanel:
    """Everything the cell loop needs, as numpy arrays keyed by unit / period index."""

    unit_ids: np.ndarray  # sorted unique ids, one per IF row
    unit_cohort: np.ndarray  # first-treatment period per unit, 0 = never treated
    unit_weight: np.ndarray  # per-unit weight used for cohort shares in aggte
    tlist: np.ndarray
    glist: np.ndarray
    design_columns: list[str]
    balanced: bool
    # balanced panel: wide arrays
    outcome_wide: np.ndarray | None = None  # n x T
    weight_wide: np.ndarray | None = None  # n x T
    design_wide: np.ndarray | None = None  # T x n x k
    # unbalanced panel: long arrays
    row_unit: np.ndarray | None = None
    row_period: np.ndarray | None = None
    row_outcome: np.ndarray | None = None
    row_weight: np.ndarray | None = None
    row_design: np.ndarray | None = None
    row_index: np.ndarray | None = None  # n x T: a unit's row in each period, -1 where it is not observed
    #: some covariate varies within a unit: cells read covariates in their base period (``att_gt``)
    covariates_vary: bool = False
    cluster_codes: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    dropped_first_period_units: int = 0
    small_groups: list = field(default_factory=list)


def _plain(value):
    """Numbers as a reader writes them in messages (2004, not np.float64(2004.0))."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _note(notes: list[str], message: str) -> None:
    warnings.warn(message, stacklevel=4)
    notes.append(message)


def _rhs(xformla: str | None) -> str:
    if xformla is None:
        return "1"
    if not isinstance(xformla, str) or "~" not in xformla:
        raise ValueError(f"xformla must be a formula string such as '~ lpop', got {xformla!r}")
    rhs = xformla.split("~", 1)[1].strip()
    return rhs or "1"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_timing_codes(frame: pd.DataFrame, gname: str, tname: str, idname: str) -> None:
    """Reject first-treatment codes that are negative, or fractional on a whole-number time scale.

    Never-treated units are coded 0, missing or +inf (R ``did``); a sentinel such as ``-1`` would
    otherwise pass as a cohort treated before the sample (R ``did`` 2.5.1 stops on negative codes).
    Raises ``ValueError`` naming the column, the offending values and how many units carry them.
    """
    codes = frame[gname].to_numpy(dtype=float)
    whole_periods = np.all(np.mod(frame[tname].to_numpy(dtype=float), 1) == 0)
    rules = [(codes < 0, "negative", "never-treated units must be coded 0 (or left missing)")]
    if whole_periods:
        finite = np.isfinite(codes)
        fractional = finite & (np.mod(np.where(finite, codes, 0.0), 1) != 0)
        rules.append((fractional, "not a whole number",
                      f"a first-treatment period must be on the scale of '{tname}' (whole numbers)"))
    for bad, rule, remedy in rules:
        if bad.any():
            values = sorted(_plain(v) for v in np.unique(codes[bad]))
            n_units = frame.loc[bad, idname].nunique()
            shown = values[:10] + (["..."] if len(values) > 10 else [])
            raise ValueError(
                f"column '{gname}' (first treatment period) has values that are {rule}: "
                f"[{', '.join(map(str, shown))}] in {_count(n_units, 'unit')}; {remedy}"
            )


def _usable_values(values) -> np.ndarray:
    """Row mask of a patsy factor's values: finite numbers, or non-missing categories."""
    if hasattr(values, "data") and not isinstance(values, (pd.Series, np.ndarray)):  # patsy categorical box
        return ~pd.isna(np.asarray(values.data, dtype=object))
    array = np.asarray(values, dtype=float)
    return np.isfinite(array.reshape(len(array), -1)).all(axis=1)


def complete_rows(frame: pd.DataFrame, rhs: str, value_columns: list, idname: str,
                  notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop rows whose covariates (evaluated by the formula ``rhs``) or values are missing or not finite.

    As R ``did`` 2.5.1 (``complete_finite_cases`` on the raw data and on the evaluated model frame):
    ``log(0)``, ``1/0`` or an infinite outcome remove the row, with one warning naming each formula
    term or column, its rows and units.  Returns the kept rows and their patsy design matrix.
    """
    value_columns = [c for c in value_columns if c]
    with np.errstate(all="ignore"):  # log(0) and friends are reported below, not as numpy warnings
        design = patsy.dmatrix(rhs, frame, NA_action="drop", return_type="dataframe")
        usable = {factor.name(): _usable_values(factor.eval(info.state, frame))
                  for factor, info in design.design_info.factor_infos.items()}
    for col in value_columns:
        values = frame[col]
        usable[col] = (np.isfinite(values.to_numpy(dtype=float)) if pd.api.types.is_numeric_dtype(values)
                       else values.notna().to_numpy())
    keep = np.logical_and.reduce(list(usable.values())) if usable else np.ones(len(frame), dtype=bool)
    if not keep.all():
        ids = frame[idname].to_numpy()
        parts = [f"'{name}': {_count(int((~ok).sum()), 'row')} ({_count(len(np.unique(ids[~ok])), 'unit')})"
                 for name, ok in usable.items() if not ok.all()]
        _note(notes, (f"dropped {_count(int((~keep).sum()), 'row')} ({_count(len(np.unique(ids[~keep])), 'unit')}) "
                      f"whose values are missing or not finite (R did 2.5.1 drops them too): {', '.join(parts)}"))
        frame = frame.loc[keep]
        if len(frame) == 0:
            raise ValueError("no rows left after dropping rows with missing or non-finite values")
        with np.errstate(all="ignore"):  # re-evaluated on the kept rows, as R's model.matrix after the filter
            design = patsy.dmatrix(rhs, frame, NA_action="raise", return_type="dataframe")
    return frame, design


def prepare_panel(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    xformla: str | None,
    control_group: str,
    anticipation: int,
    weightsname: str | None,
    clustervars,
    allow_unbalanced_panel: bool,
) -> PreparedPanel:
    notes: list[str] = []
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    extra_clusters = [c for c in ([clustervars] if isinstance(clustervars, str) else list(clustervars or [])) if c != idname]
    if len(extra_clusters) > 1:
        raise ValueError(f"clustervars: at most one cluster variable besides '{idname}' is supported, got {extra_clusters}")
    cluster_name = extra_clusters[0] if extra_clusters else None
    needed = [yname, tname, idname, gname] + [c for c in (weightsname, cluster_name) if c]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found in data (available: {list(data.columns)})")
    for col in (yname, tname, gname) + ((weightsname,) if weightsname else ()):
        if not pd.api.types.is_numeric_dtype(data[col]):
            raise ValueError(f"column '{col}' must be numeric, got dtype {data[col].dtype}")

    frame = data.reset_index(drop=True)  # positional labels: the design matrix is aligned on them
    for col in (tname, idname):
        if frame[col].isna().any():
            row = frame.index[frame[col].isna()][0]
            raise ValueError(f"column '{col}' has missing values (first at row {row})")
    check_timing_codes(frame, gname, tname, idname)
    frame[gname] = frame[gname].fillna(0)  # NaN first-treatment period = never treated

    frame, design = complete_rows(frame, _rhs(xformla), [yname, weightsname, cluster_name], idname, notes)
    if "Intercept" in design.columns:  # the estimators expect the intercept in column 0, as R's model.matrix
        design = design[["Intercept"] + [c for c in design.columns if c != "Intercept"]]
    else:
        design.insert(0, "Intercept", 1.0)
    if frame[yname].nunique() == 1:
        raise ValueError(
            f"outcome '{yname}' is constant (every value is {frame[yname].iloc[0]!r}); "
            "there is no variation to estimate a treatment effect from"
        )
    if weightsname and ((frame[weightsname] < 0).any() or frame[weightsname].sum() <= 0):
        raise ValueError(f"weights '{weightsname}' must be non-negative with a positive sum")

    duplicated = frame.duplicated([idname, tname])
    if duplicated.any():
        row = frame.loc[duplicated].iloc[0]
        raise ValueError(
            f"{int(duplicated.sum())} duplicate ({idname}, {tname}) rows; first: {idname}={_plain(row[idname])!r}, "
            f"{tname}={_plain(row[tname])!r}"
        )
    per_unit_g = frame.groupby(idname)[gname].nunique()
    if (per_unit_g > 1).any():
        bad = per_unit_g.index[per_unit_g > 1][0]
        raise ValueError(f"'{gname}' must be constant within each unit; {idname}={_plain(bad)!r} has several values")
    if cluster_name is not None and (frame.groupby(idname)[cluster_name].nunique() > 1).any():
        raise ValueError(f"cluster variable '{cluster_name}' must be constant within each unit")

    tlist = np.sort(frame[tname].unique())
    frame.loc[frame[gname] > tlist.max() + anticipation, gname] = 0  # treated after the sample: never treated (R)

    glist = np.sort(frame[gname].unique())
    latest_cohort = None
    if not (glist == 0).any():
        latest_cohort = _plain(glist.max())
        cutoff = latest_cohort - anticipation
        if control_group == "nevertreated":
            _note(notes, (
                f"no never-treated units: as R did, the last cohort ({latest_cohort}) is used as never-treated "
                f"and periods >= {cutoff} are dropped"))
            frame = frame.loc[frame[tname] < cutoff].copy()
            frame.loc[frame[gname] == latest_cohort, gname] = 0
        else:
            _note(notes, (
                f"no never-treated units: as R did, periods >= {cutoff} are dropped and the last cohort "
                f"({latest_cohort}) serves only as a not-yet-treated comparison group"))
            frame = frame.loc[frame[tname] < cutoff].copy()
        design = design.loc[frame.index]
        tlist = np.sort(frame[tname].unique())
        if len(tlist) < 2:
            raise ValueError("fewer than two periods remain before the last cohort is treated; cannot estimate")

    first_period = tlist[0]
    dropped_first_period_units = 0
    treated_at_start = (frame[gname] > 0) & (frame[gname] <= first_period + anticipation)
    if treated_at_start.any():
        dropped_first_period_units = frame.loc[treated_at_start, idname].nunique()
        cohorts = sorted(_plain(g) for g in frame.loc[treated_at_start, gname].unique())
        _note(notes, (
            f"dropped {dropped_first_period_units} units already treated in the first period {_plain(first_period)} "
            f"(cohorts {cohorts}); as in R did they have no pre-treatment period"))
        frame = frame.loc[~treated_at_start]
        design = design.loc[frame.index]
    glist = np.sort(frame[gname].unique())
    glist = glist[(glist > 0) & (glist > first_period + anticipation)]
    if latest_cohort is not None and control_group == "notyettreated":
        glist = glist[glist < latest_cohort]
    if len(glist) == 0:
        raise ValueError(f"no treated cohort left to estimate: check that '{gname}' is on the scale of '{tname}'")

    frame = frame.sort_values([idname, tname])
    design = design.loc[frame.index]
    unit_ids, row_unit = np.unique(frame[idname].to_numpy(), return_inverse=True)
    row_period = np.searchsorted(tlist, frame[tname].to_numpy())
    n, n_periods = len(unit_ids), len(tlist)
    balanced = len(frame) == n * n_periods
    if not balanced and not allow_unbalanced_panel:
        counts = np.bincount(row_unit, minlength=n)
        n_unbalanced = int((counts < n_periods).sum())
        raise ValueError(
            f"unbalanced panel: {n_unbalanced} of {n} units are not observed in all {n_periods} periods "
            "(after dropping rows with missing or non-finite values); pass allow_unbalanced_panel=True to estimate with "
            "R's unbalanced-panel estimators, or balance the panel first"
        )

    cohort_rows = frame[gname].to_numpy(dtype=float)
    unit_cohort = np.zeros(n)
    unit_cohort[row_unit] = cohort_rows
    weights = frame[weightsname].to_numpy(dtype=float) if weightsname else np.ones(len(frame))
    design_values = design.to_numpy(dtype=float)
    outcome = frame[yname].to_numpy(dtype=float)
    prepared = PreparedPanel(
        unit_ids=unit_ids, unit_cohort=unit_cohort, unit_weight=np.zeros(n), tlist=tlist, glist=glist,
        design_columns=list(design.columns), balanced=balanced, notes=notes,
    )
    if cluster_name is not None:
        labels = np.empty(n, dtype=object)
        labels[row_unit] = frame[cluster_name].to_numpy()
        prepared.cluster_codes = pd.factorize(labels, sort=True)[0]
    if balanced:
        prepared.outcome_wide = outcome.reshape(n, n_periods)
        prepared.weight_wide = weights.reshape(n, n_periods)
        prepared.design_wide = np.ascontiguousarray(design_values.reshape(n, n_periods, -1).transpose(1, 0, 2))
        prepared.unit_weight = prepared.weight_wide[:, 0]
    else:
        prepared.row_unit, prepared.row_period = row_unit, row_period
        prepared.row_outcome, prepared.row_weight, prepared.row_design = outcome, weights, design_values
        prepared.row_index = np.full((n, n_periods), -1)
        prepared.row_index[row_unit, row_period] = np.arange(len(frame))
        first_row = np.searchsorted(row_unit, row_unit)  # rows are sorted by unit
        prepared.covariates_vary = bool(np.any(design_values != design_values[first_row]))
        prepared.unit_weight = np.bincount(row_unit, weights=weights, minlength=n) / np.bincount(row_unit, minlength=n)

    min_size = design.shape[1] - 1 + 5  # R: number of covariates + 5
    sizes = {g: int(np.sum(unit_cohort == g)) for g in np.append(glist, 0)}
    prepared.small_groups = [_plain(g) for g, size in sizes.items() if 0 < size < min_size]
    if prepared.small_groups:
        _note(notes, f"small groups (fewer than {min_size} units): {prepared.small_groups}; their estimates are imprecise")
    if control_group == "nevertreated" and sizes[0] < min_size:
        raise ValueError(f"never-treated group is too small ({sizes[0]} units); try control_group='notyettreated'")
    prepared.dropped_first_period_units = int(dropped_first_period_units)
    return prepared
