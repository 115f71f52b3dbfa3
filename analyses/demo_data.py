"""Seeded synthetic programme data with a planted, known truth.

The generator writes the four landing files of the inputs contract v1 (``firms``,
``financials``, ``participation``, ``exports``) plus ``true_effects.csv``, so the
whole pipeline can be run, and its estimates checked, without confidential agency
data.  It reproduces what makes real evaluations hard:

* Selection on observables only.  A firm's first service and cohort year are drawn
  jointly from a multinomial logit whose utilities are linear in the baseline
  covariates the estimator uses (``BASELINE_COVARIATES``: log employees, log
  turnover, exporter status in the first panel year, cluster membership, age), with
  "never" as the zero-utility alternative.  For any (service, cohort) against the
  never-treated the propensity is therefore exactly logistic in those covariates.
  Larger firms, cluster members and exporters join more often.
* Exporting is a persistent Markov process (not exporting / first year / established)
  with a latent firm propensity that is correlated with the covariates but, given
  them, independent of treatment.  Its trend rises with cluster membership and size,
  so parallel trends hold conditionally on the covariates but not unconditionally: a
  naive comparison or an unconditional DiD is biased upwards.  About half of new
  exporters stop within a year; values are log-normal with heavy tails; the number
  of destinations grows with value; destinations are sticky, EU-heavy firm
  preferences over a realistic list.
* Effects are tied to the firm's first service and its event time, scaled up for
  early cohorts, small firms and larger doses (``EFFECT_PROFILES``).  Advisory and
  network add 2.5-5 points a year to the probability of (still) exporting; through
  persistence the export share of participants ends up 7-10 points higher after
  3-5 years.  They raise export value by 5-15 % and (network most) the number of
  markets.  Grants add 7-14 points while the grant runs, and from event year 3 the
  firm is back on its own untreated path (effect 0).  Later episodes (repeat
  advisory, a grant after advisory, ...) appear in the data as part of the package
  but carry no separate effect.

Truth: both worlds are simulated with common random numbers (observed = treated
potential outcomes from the first start; counterfactual = nobody treated), each
world's tables go through ``build_firm_year_panel``, and the sample ATT(g,t) of every
outcome is the cohort mean of the difference.  It is aggregated as R ``did::aggte``
does (``simple``: post-period ATT(g,t) weighted by cohort size; ``dynamic``: by
event time, cohort-size weighted over the cohorts observed at that event time,
pre-periods included and zero by construction; ``group``: each cohort's mean
post-period ATT).

``DemoData`` frames hold exactly what the CSV files hold, typed as the contract
layer hands clean tables on (dates as datetime64, NaN = not applicable).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import poisson

from analyses.panel import PANEL_OUTCOMES, SERVICE_DOSE_COLUMN, SERVICES, build_firm_year_panel

DEFAULT_SEED = 20240601
COHORT_YEARS = tuple(range(2014, 2023))
NEVER_TREATED_SHARE = 0.62

# Register -------------------------------------------------------------------
NACE2_WEIGHTS = {
    "01": 0.02, "10": 0.08, "13": 0.02, "16": 0.03, "20": 0.03, "22": 0.05, "25": 0.14,
    "26": 0.05, "27": 0.05, "28": 0.12, "29": 0.02, "32": 0.04, "33": 0.03,
    "46": 0.13, "62": 0.10, "71": 0.06, "72": 0.03,
}
EXPORT_ORIENTED_NACE2 = frozenset({"20", "26", "27", "28", "29", "72"})
NUTS2_WEIGHTS = {  # German NUTS-2 regions, weighted roughly by business population
    "DE11": 5, "DE12": 3, "DE13": 3, "DE14": 2, "DE21": 6, "DE22": 1.5, "DE23": 1.5,
    "DE24": 1.5, "DE25": 2, "DE26": 1.7, "DE27": 2, "DE30": 4, "DE40": 2.5, "DE50": 0.8,
    "DE60": 2.3, "DE71": 4, "DE72": 1.3, "DE73": 1.5, "DE80": 1.6, "DE91": 2, "DE92": 2.6,
    "DE93": 2, "DE94": 3, "DEA1": 6, "DEA2": 5.2, "DEA3": 3.1, "DEA4": 2.4, "DEA5": 4,
    "DEB1": 1.8, "DEB2": 0.6, "DEB3": 2.4, "DEC0": 1.2, "DED2": 1.9, "DED4": 1.7,
    "DED5": 1.2, "DEE0": 2.5, "DEF0": 3.4, "DEG0": 2.5,
}
# Destinations of German SMEs (ISO 3166-1 alpha-2), EU-heavy, weighted by popularity.
DESTINATION_WEIGHTS = {
    "FR": 10, "NL": 9, "AT": 9, "IT": 7, "PL": 7, "BE": 6, "ES": 5, "CZ": 5, "SE": 3,
    "DK": 3, "HU": 3, "LU": 2, "SK": 2, "RO": 2, "PT": 2, "FI": 2, "IE": 1.5, "SI": 1.5,
    "GR": 1.2, "HR": 1, "BG": 1, "LT": 0.8, "LV": 0.6, "EE": 0.6, "CY": 0.3, "MT": 0.2,
    "CH": 7, "GB": 6, "US": 7, "CN": 4, "NO": 2, "TR": 2, "JP": 1.5, "KR": 1, "IN": 1,
    "CA": 1, "AU": 0.8, "MX": 0.6, "BR": 0.6, "AE": 0.8, "SG": 0.6, "ZA": 0.4,
    "IL": 0.4, "UA": 0.5, "RS": 0.5,
}

# Selection: utility slopes per service on (log employees, log turnover, exporter,
# cluster, age), all measured in the first panel year; service shares and cohort profile.
SELECTION_SLOPES = {
    "advisory": (0.30, 0.10, 0.40, 0.60, -0.010),
    "network": (0.35, 0.10, 0.80, 1.10, 0.000),
    "grant": (0.45, 0.20, 0.50, 0.80, -0.015),
}
SERVICE_SHARES = {"advisory": 0.45, "network": 0.30, "grant": 0.25}
COHORT_PROFILE = (0.6, 0.8, 1.0, 1.1, 1.2, 1.2, 0.8, 1.0, 1.1)

# Untreated export process (logit scale).
ENTRY_INTERCEPT = -2.6  # not exporting -> exporting
NEW_EXPORTER_INTERCEPT = -0.6  # first export year -> still exporting
ESTABLISHED_INTERCEPT = 2.3  # established -> still exporting
BURN_IN_YEARS = 15  # the chain runs this long at first-year conditions before the panel starts
ENTRANT_VALUE_DISCOUNT = -0.7  # log value in a firm's first export year
DESTINATION_RATE_INTERCEPT, DESTINATION_RATE_SLOPE = 0.3, 0.45  # log Poisson mean vs log value

# Effects by event time 0, 1, 2, 3+ (last entry repeats): export probability (points),
# log export value, log Poisson mean of the destination count.
EFFECT_PROFILES = {
    "advisory": {"probability": (0.025, 0.04, 0.05), "value": (0.05, 0.10, 0.15),
                 "markets": (0.03, 0.05, 0.05)},
    "network": {"probability": (0.03, 0.05), "value": (0.08, 0.12),
                "markets": (0.06, 0.10, 0.12)},
    "grant": {"probability": (0.14, 0.12, 0.07, 0.0), "value": (0.18, 0.15, 0.08, 0.0),
              "markets": (0.08, 0.08, 0.04, 0.0)},
}
GRANT_FALLBACK_EVENT_TIME = 3  # from here a grant firm is back on its untreated path
DOSE_REFERENCE = {"advisory": 35.0, "network": 2.8, "grant": 20_000.0}  # typical episode dose
SERVICE_DOSE = {  # (median, log sd, min, max, rounding step) of the dose per episode
    "advisory": (35.0, 0.6, 10.0, 120.0, 0.5),
    "grant": (20_000.0, 0.9, 5_000.0, 150_000.0, 100.0),
}
PROGRAMME_NAMES = {"advisory": "Go International", "network": "Export Network",
                   "grant": "Market Entry Grant"}
EPISODE_DAYS = {"advisory": (60, 300), "network": (365, 1095), "grant": (180, 720)}

LANDING_FILES = ("firms", "financials", "participation", "exports")


@dataclass(frozen=True)
class DemoData:
    """The four landing tables, typed as clean tables, and the planted truth."""

    firms: pd.DataFrame
    financials: pd.DataFrame
    participation: pd.DataFrame
    exports: pd.DataFrame
    true_effects: pd.DataFrame


@dataclass(frozen=True)
class _Firms:
    """Firm-level draws shared by both worlds."""

    table: pd.DataFrame
    log_size: np.ndarray  # continuous log employees in the first year
    productivity: np.ndarray  # log domestic turnover per employee
    in_cluster: np.ndarray
    export_oriented: np.ndarray
    age: np.ndarray


@dataclass(frozen=True)
class _Treatment:
    service: np.ndarray  # index into SERVICES, -1 = never
    cohort: np.ndarray  # calendar year, 0 = never
    scale: np.ndarray  # effect multiplier (cohort x size x dose), 0 for never
    episodes: pd.DataFrame


def generate_demo_data(
    n_firms: int = 10_000,
    first_year: int = 2012,
    last_year: int = 2024,
    seed: int = DEFAULT_SEED,
    messy: bool = False,
) -> DemoData:
    """Draw a balanced firm-year data set and its true effects; same seed, same data.

    ``messy`` splits about 1 % of export rows into two shipments of the same
    firm-year-destination (legitimate duplicates the panel builder sums).
    """
    if n_firms < 50:
        raise ValueError(f"n_firms must be at least 50 to populate the cohorts, got {n_firms}")
    if not first_year < COHORT_YEARS[0] <= COHORT_YEARS[-1] <= last_year:
        raise ValueError(
            f"years {first_year}-{last_year} must start before {COHORT_YEARS[0]} "
            f"and reach {COHORT_YEARS[-1]} (the programme cohorts)"
        )
    rng = np.random.default_rng(seed)
    years = np.arange(first_year, last_year + 1)
    firms = _draw_firms(rng, n_firms, first_year)
    employees, domestic = _draw_accounts(rng, firms, years.size)
    exporting = _ExportProcess(rng, firms, domestic)

    start = exporting.start()
    (first_rows,) = exporting.destination_rows(0, [start])
    exports_first = np.bincount(first_rows[0], weights=first_rows[3], minlength=n_firms)
    turnover_first = np.round(domestic[:, 0] + exports_first)
    treatment = _assign_treatment(
        rng, firms, employees[:, 0], turnover_first, start.exporting, years
    )

    rows = {"observed": [first_rows], "untreated": [first_rows]}
    for t in range(1, years.size):
        event_time = np.where(treatment.cohort > 0, years[t] - treatment.cohort, -1)
        untreated_rows, observed_rows = exporting.destination_rows(
            t, exporting.step(t, treatment, event_time)
        )
        rows["untreated"].append(untreated_rows)
        rows["observed"].append(observed_rows)

    tables = {
        world: _world_tables(firms, employees, domestic, world_rows, years, treatment)
        for world, world_rows in rows.items()
    }
    true_effects = _true_effects(tables["observed"], tables["untreated"])
    observed = tables["observed"]
    exports = _split_shipments(rng, observed["exports"]) if messy else observed["exports"]
    return DemoData(
        firms=observed["firms"],
        financials=observed["financials"],
        participation=observed["participation"],
        exports=exports,
        true_effects=true_effects,
    )


def _draw_firms(rng: np.random.Generator, n: int, first_year: int) -> _Firms:
    nace2 = rng.choice(list(NACE2_WEIGHTS), size=n, p=_normalised(NACE2_WEIGHTS))
    region = rng.choice(list(NUTS2_WEIGHTS), size=n, p=_normalised(NUTS2_WEIGHTS))
    export_oriented = np.isin(nace2, list(EXPORT_ORIENTED_NACE2))
    log_size = rng.normal(np.log(12.0), 1.0, n).clip(np.log(0.6), np.log(249.0))
    centred_size = log_size - np.log(12.0)
    in_cluster = rng.random(n) < expit(-1.3 + 0.35 * centred_size + 0.6 * export_oriented)
    productivity = np.log(110_000.0) + 0.25 * export_oriented + rng.normal(0.0, 0.45, n)
    age = np.minimum(np.round(rng.lognormal(np.log(14.0), 0.7, n)), 80).astype("int64")
    table = pd.DataFrame(
        {
            "firm_id": np.array([f"F{i:06d}" for i in range(1, n + 1)], dtype=object),
            "nace2": nace2.astype(object),
            "region": region.astype(object),
            "founded_year": (first_year - age).astype("int64"),
            "in_cluster": in_cluster,
        }
    )
    return _Firms(table, log_size, productivity, in_cluster, export_oriented, age)


def _draw_accounts(
    rng: np.random.Generator, firms: _Firms, n_years: int
) -> tuple[np.ndarray, np.ndarray]:
    """Employees (int) and domestic turnover paths: firm growth rate plus AR(1) noise."""
    n = firms.log_size.size
    growth = rng.normal(0.01, 0.02, n)
    shocks = _ar1(rng, n, n_years, rho=0.6, sd=0.08)
    log_size = firms.log_size[:, None] + growth[:, None] * np.arange(n_years) + shocks
    employees = np.round(np.exp(log_size)).astype("int64")
    noise = rng.normal(0.0, 0.1, (n, n_years))
    domestic = np.exp(np.maximum(log_size, np.log(0.5)) + firms.productivity[:, None] + noise)
    return employees, domestic


def _ar1(rng: np.random.Generator, n: int, n_years: int, rho: float, sd: float) -> np.ndarray:
    """AR(1) paths starting at 0 in the first year (so first-year values are the draws)."""
    innovations = rng.normal(0.0, sd, (n, n_years))
    path = np.zeros((n, n_years))
    for t in range(1, n_years):
        path[:, t] = rho * path[:, t - 1] + innovations[:, t]
    return path


@dataclass(frozen=True)
class _YearOutcome:
    exporting: np.ndarray
    value: np.ndarray  # total export value (meaningful where exporting)
    n_markets: np.ndarray  # destination count, 0 where not exporting


class _ExportProcess:
    """Both worlds' export paths driven by the same random numbers (common random numbers).

    States: 0 not exporting, 1 first export year, 2 established exporter.
    """

    def __init__(self, rng: np.random.Generator, firms: _Firms, domestic: np.ndarray):
        n, n_years = domestic.shape
        centred_size = firms.log_size - np.log(12.0)
        latent = rng.normal(0.0, 1.0, n)
        self.propensity = (
            -0.2 + 0.55 * centred_size + 0.6 * firms.in_cluster
            + 0.5 * (firms.productivity - np.log(110_000.0)) + 0.4 * firms.export_oriented
            + latent
        )
        self.trend = -0.03 + 0.20 * firms.in_cluster + 0.12 * centred_size
        self.transition_draws = rng.random((n, n_years))
        self.burn_in_draws = rng.random((BURN_IN_YEARS, n))
        export_ratio = rng.normal(-1.6, 1.0, n) + 0.3 * latent
        self.log_value_base = (
            np.log(domestic) + export_ratio[:, None]
            + _ar1(rng, n, n_years, rho=0.7, sd=0.35)
            + 0.04 * firms.in_cluster[:, None] * np.arange(n_years)
        )
        self.market_draws = rng.random((n, n_years)).clip(1e-12, 1 - 1e-12)
        log_weights = np.log(_normalised(DESTINATION_WEIGHTS))
        self.firm_market_taste = log_weights + rng.gumbel(size=(n, log_weights.size))
        self.rng = rng
        self.state = {"untreated": np.zeros(n, dtype=np.int8), "observed": np.zeros(n, dtype=np.int8)}

    def start(self) -> _YearOutcome:
        """First panel year, common to both worlds (no cohort starts then).

        The chain first runs ``BURN_IN_YEARS`` at first-year conditions, so first-year
        exporters are a realistic mix of new and established ones.
        """
        state = np.zeros(self.propensity.size, dtype=np.int8)
        for draws in self.burn_in_draws:
            state = self._transition(0, state, 0.0, draws)
        state = self._transition(0, state, 0.0)
        self.state = {"untreated": state, "observed": state}
        return self._outcome(0, state, 0.0, 0.0)

    def step(self, t: int, treatment: _Treatment, event_time: np.ndarray) -> list[_YearOutcome]:
        """Advance both worlds to year index ``t`` >= 1; returns ``[untreated, observed]``."""
        untreated_state = self._transition(t, self.state["untreated"], 0.0)
        treated = (treatment.cohort > 0) & (event_time >= 0)
        effects = {
            kind: np.where(treated, _effect(kind, treatment.service, event_time) * treatment.scale, 0.0)
            for kind in ("probability", "value", "markets")
        }
        observed_state = self._transition(t, self.state["observed"], effects["probability"])
        fallen_back = (treatment.service == SERVICES.index("grant")) & (
            event_time >= GRANT_FALLBACK_EVENT_TIME
        )
        observed_state = np.where(fallen_back, untreated_state, observed_state)
        self.state = {"untreated": untreated_state, "observed": observed_state}
        return [
            self._outcome(t, untreated_state, 0.0, 0.0),
            self._outcome(t, observed_state, effects["value"], effects["markets"]),
        ]

    def _transition(
        self, t: int, state: np.ndarray, uplift: np.ndarray | float, draws: np.ndarray | None = None
    ) -> np.ndarray:
        """Next state; ``uplift`` adds the treatment effect to the probability of exporting."""
        draws = self.transition_draws[:, t] if draws is None else draws
        index = self.propensity + self.trend * t
        intercept = np.choose(state, (ENTRY_INTERCEPT, NEW_EXPORTER_INTERCEPT, ESTABLISHED_INTERCEPT))
        probability = np.minimum(expit(intercept + index) + uplift, 1.0)
        exporting = draws < probability
        return np.where(exporting, np.where(state == 0, 1, 2), 0).astype(np.int8)

    def _outcome(self, t: int, state: np.ndarray, value_effect, market_effect) -> _YearOutcome:
        exporting = state > 0
        log_value = self.log_value_base[:, t] + ENTRANT_VALUE_DISCOUNT * (state == 1) + value_effect
        rate = np.exp(
            DESTINATION_RATE_INTERCEPT + DESTINATION_RATE_SLOPE * (log_value - 11.5) + market_effect
        )
        n_markets = 1 + poisson.ppf(self.market_draws[:, t], rate)
        n_markets = np.where(exporting, np.minimum(n_markets, len(DESTINATION_WEIGHTS)), 0)
        return _YearOutcome(exporting, np.exp(log_value), n_markets.astype("int64"))

    def destination_rows(self, t: int, outcomes: list[_YearOutcome]) -> list[tuple[np.ndarray, ...]]:
        """Per world: (firm, year index, destination, value) rows of year ``t``.

        Each firm's value is split over its ``n_markets`` currently preferred
        destinations.  Preferences are a sticky firm taste plus a small yearly
        reshuffle, drawn once for all worlds, so a larger market count adds markets
        rather than swapping them.
        """
        n, n_destinations = self.firm_market_taste.shape
        yearly = self.firm_market_taste + 0.35 * self.rng.gumbel(size=(n, n_destinations))
        ranking = np.argsort(-yearly, axis=1, kind="stable")
        share_noise = self.rng.lognormal(0.0, 0.3, (n, n_destinations))
        rows = []
        for outcome in outcomes:
            firm, rank = np.nonzero(np.arange(n_destinations) < outcome.n_markets[:, None])
            weight = (rank + 1.0) ** -1.1 * share_noise[firm, rank]
            total_weight = np.bincount(firm, weights=weight, minlength=n)
            amount = np.round(outcome.value[firm] * weight / total_weight[firm], 2)
            rows.append((firm, np.full(firm.size, t), ranking[firm, rank], np.maximum(amount, 0.01)))
        return rows


def _effect_table(kind: str) -> np.ndarray:
    """Services x event times 0..horizon-1; each profile's last entry holds afterwards."""
    profiles = [EFFECT_PROFILES[s][kind] for s in SERVICES]
    horizon = max(len(p) for p in profiles)
    return np.array([list(p) + [p[-1]] * (horizon - len(p)) for p in profiles])


_EFFECT_TABLES = {kind: _effect_table(kind) for kind in ("probability", "value", "markets")}


def _effect(kind: str, service: np.ndarray, event_time: np.ndarray) -> np.ndarray:
    """Planted effect of ``kind`` at each firm's event time (0 before treatment)."""
    table = _EFFECT_TABLES[kind]
    looked_up = table[np.maximum(service, 0), np.clip(event_time, 0, table.shape[1] - 1)]
    return np.where((service >= 0) & (event_time >= 0), looked_up, 0.0)


def _assign_treatment(
    rng: np.random.Generator,
    firms: _Firms,
    employees_first: np.ndarray,
    turnover_first: np.ndarray,
    exporter_first: np.ndarray,
    years: np.ndarray,
) -> _Treatment:
    """Joint (first service, cohort) draw: multinomial logit in first-year covariates."""
    covariates = np.column_stack(
        [np.log1p(employees_first), np.log1p(turnover_first), exporter_first,
         firms.in_cluster, firms.age]
    ).astype("float64")
    covariates -= covariates.mean(axis=0)
    alternatives = [(s, g) for s in range(len(SERVICES)) for g in COHORT_YEARS]
    slopes = np.array([SELECTION_SLOPES[SERVICES[s]] for s, _ in alternatives])
    profile = dict(zip(COHORT_YEARS, np.array(COHORT_PROFILE) / sum(COHORT_PROFILE)))
    intercepts = np.log([SERVICE_SHARES[SERVICES[s]] * profile[g] for s, g in alternatives])
    utilities = covariates @ slopes.T + intercepts

    def never_share(shift: float) -> float:
        return float(np.mean(1.0 / (1.0 + np.exp(utilities + shift).sum(axis=1))))

    low, high = -20.0, 20.0
    for _ in range(60):  # never_share falls as the shift rises
        middle = (low + high) / 2
        low, high = (middle, high) if never_share(middle) > NEVER_TREATED_SHARE else (low, middle)
    weights = np.exp(utilities + (low + high) / 2)
    probabilities = np.column_stack([np.ones(len(weights)), weights])
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    choice = (rng.random(len(weights))[:, None] > probabilities.cumsum(axis=1)).sum(axis=1)
    choice = np.minimum(choice, len(alternatives))  # guard the float round-off at the top end
    chosen = np.array([(-1, 0)] + alternatives)[choice]
    service, cohort = chosen[:, 0], chosen[:, 1]

    episodes = _draw_episodes(rng, firms.table["firm_id"].to_numpy(), service, cohort, years[-1])
    first_dose = _first_episode_dose(episodes, firms.table["firm_id"])
    size_gap = np.log1p(employees_first) - np.log1p(employees_first).mean()
    scale = (
        (1.25 - 0.06 * (cohort - COHORT_YEARS[0]))
        * np.clip(1.2 - 0.3 * size_gap, 0.6, 1.8)
        * np.clip(first_dose, 0.7, 1.4)
    )
    return _Treatment(service, cohort, np.where(service >= 0, scale, 0.0), episodes)


def _draw_episodes(
    rng: np.random.Generator, firm_ids: np.ndarray, service: np.ndarray, cohort: np.ndarray, last_year: int
) -> pd.DataFrame:
    """First episode in the cohort year, plus 0-2 follow-ups in later years."""
    treated = np.flatnonzero(service >= 0)
    follow_ups = rng.choice(3, size=treated.size, p=[0.55, 0.35, 0.10])
    firm = np.concatenate([treated, np.repeat(treated, follow_ups)])
    order = np.concatenate([np.zeros(treated.size, int), _within_group_counter(np.repeat(treated, follow_ups)) + 1])
    repeat_same = rng.random(firm.size) < 0.4
    other = (service[firm] + rng.integers(1, len(SERVICES), firm.size)) % len(SERVICES)
    episode_service = np.where((order == 0) | repeat_same, service[firm], other)
    start_year = cohort[firm] + order * rng.integers(1, 3, firm.size)
    keep = start_year <= last_year
    firm, episode_service, start_year = firm[keep], episode_service[keep], start_year[keep]

    start = pd.to_datetime(pd.DataFrame({"year": start_year, "month": 1, "day": 1}))
    start = start + pd.to_timedelta(rng.integers(0, 365, firm.size), unit="D")
    low_high = np.array([EPISODE_DAYS[s] for s in SERVICES])[episode_service]
    end = start + pd.to_timedelta(rng.integers(low_high[:, 0], low_high[:, 1] + 1), unit="D")
    end = end.where(end <= pd.Timestamp(year=last_year, month=12, day=31))

    names = np.array(SERVICES, dtype=object)[episode_service]
    episodes = pd.DataFrame(
        {
            "firm_id": firm_ids[firm],
            "programme": [f"{PROGRAMME_NAMES[s]} {y}" for s, y in zip(names, start_year)],
            "service": names,
            "start_date": start.to_numpy(dtype="datetime64[ns]"),
            "end_date": end.to_numpy(dtype="datetime64[ns]"),
            "advisory_hours": np.where(names == "advisory", _dose(rng, "advisory", firm.size), np.nan),
            "grant_eur": np.where(names == "grant", _dose(rng, "grant", firm.size), np.nan),
            "network_events": np.where(
                names == "network", np.minimum(1 + rng.poisson(1.8, firm.size), 8), np.nan
            ).astype("float64"),
        }
    )
    return episodes.sort_values(["firm_id", "start_date"], kind="stable").reset_index(drop=True)


def _within_group_counter(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal values of a sorted array."""
    if group.size == 0:
        return group.astype(int)
    starts = np.r_[True, group[1:] != group[:-1]]
    position = np.arange(group.size)
    return position - np.maximum.accumulate(np.where(starts, position, 0))


def _dose(rng: np.random.Generator, service: str, size: int) -> np.ndarray:
    median, log_sd, low, high, step = SERVICE_DOSE[service]
    draw = rng.lognormal(np.log(median), log_sd, size).clip(low, high)
    return np.round(draw / step) * step


def _first_episode_dose(episodes: pd.DataFrame, firm_ids: pd.Series) -> np.ndarray:
    """First episode's dose relative to the service median, for the effect scale (1 = median)."""
    first = episodes.drop_duplicates("firm_id").set_index("firm_id")
    dose = np.select(
        [first["service"] == s for s in SERVICES],
        [first[SERVICE_DOSE_COLUMN[s]] / DOSE_REFERENCE[s] for s in SERVICES],
    )
    relative = pd.Series(dose ** 0.25, index=first.index)
    return relative.reindex(firm_ids).fillna(1.0).to_numpy()


def _world_tables(
    firms: _Firms,
    employees: np.ndarray,
    domestic: np.ndarray,
    rows: list[tuple[np.ndarray, ...]],
    years: np.ndarray,
    treatment: _Treatment,
) -> dict[str, pd.DataFrame]:
    """Typed clean tables of one world (observed or untreated); turnover includes exports."""
    n, n_years = employees.shape
    firm, year_index, destination, amount = (np.concatenate(parts) for parts in zip(*rows))
    order = np.lexsort((destination, year_index, firm))
    firm, year_index, destination, amount = firm[order], year_index[order], destination[order], amount[order]
    firm_ids = firms.table["firm_id"].to_numpy()
    exports = pd.DataFrame(
        {
            "firm_id": firm_ids[firm],
            "year": years[year_index].astype("int64"),
            "destination": np.array(list(DESTINATION_WEIGHTS), dtype=object)[destination],
            "export_value_eur": amount,
        }
    )
    exported = np.bincount(firm * n_years + year_index, weights=amount, minlength=n * n_years)
    financials = pd.DataFrame(
        {
            "firm_id": np.repeat(firm_ids, n_years),
            "year": np.tile(years, n).astype("int64"),
            "employees": employees.ravel(),
            "turnover_eur": np.round(domestic.ravel() + exported),
        }
    )
    return {
        "firms": firms.table,
        "financials": financials,
        "participation": treatment.episodes,
        "exports": exports,
    }


def _true_effects(observed: dict[str, pd.DataFrame], untreated: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Sample ATT(g,t) from the two worlds, aggregated like R did::aggte."""
    panel = build_firm_year_panel(**observed).panel
    counterfactual = build_firm_year_panel(**untreated).panel
    if not panel[["firm_id", "year"]].equals(counterfactual[["firm_id", "year"]]):
        raise AssertionError("the two worlds must have the same firm-years")
    difference = (panel[list(PANEL_OUTCOMES)] - counterfactual[list(PANEL_OUTCOMES)]).assign(
        first_service=panel["first_service"],
        group=panel["first_service_year"],
        year=panel["year"],
        firm_id=panel["firm_id"],
    )
    treated = difference[difference["first_service"] != "none"]
    att = treated.groupby(["first_service", "group", "year"]).agg(
        **{o: (o, "mean") for o in PANEL_OUTCOMES}, n_treated=("firm_id", "size")
    ).reset_index()
    long = att.melt(
        id_vars=["first_service", "group", "year", "n_treated"], value_vars=list(PANEL_OUTCOMES),
        var_name="outcome", value_name="att",
    ).rename(columns={"first_service": "treatment"})
    long["event_time"] = long["year"] - long["group"]
    long["weighted"] = long["att"] * long["n_treated"]
    post = long[long["event_time"] >= 0]
    by = ["treatment", "outcome"]

    simple = post.groupby(by).agg(weighted=("weighted", "sum"), weight=("n_treated", "sum"))
    simple_size = post.drop_duplicates([*by, "group"]).groupby(by)["n_treated"].sum()
    simple = pd.DataFrame(
        {"true_effect": simple["weighted"] / simple["weight"], "n_treated": simple_size}
    ).reset_index().assign(aggregation="simple")

    dynamic = long.groupby([*by, "event_time"]).agg(weighted=("weighted", "sum"), n_treated=("n_treated", "sum"))
    dynamic = dynamic.assign(true_effect=dynamic["weighted"] / dynamic["n_treated"]).reset_index()
    dynamic = dynamic.assign(aggregation="dynamic")

    group = post.groupby([*by, "group"]).agg(true_effect=("att", "mean"), n_treated=("n_treated", "first"))
    group = group.reset_index().assign(aggregation="group")

    truth = pd.concat([simple, dynamic, group], ignore_index=True)
    truth["event_time"] = truth["event_time"].astype("Int64")
    truth["group"] = truth["group"].astype("Int64")
    truth["n_treated"] = truth["n_treated"].astype("int64")
    truth["_service"] = truth["treatment"].map({s: i for i, s in enumerate(SERVICES)})
    truth["_outcome"] = truth["outcome"].map({o: i for i, o in enumerate(PANEL_OUTCOMES)})
    truth["_aggregation"] = truth["aggregation"].map({"simple": 0, "dynamic": 1, "group": 2})
    truth = truth.sort_values(["_service", "_outcome", "_aggregation", "event_time", "group"])
    columns = ["treatment", "outcome", "aggregation", "event_time", "group", "true_effect", "n_treated"]
    return truth[columns].reset_index(drop=True)


def _split_shipments(rng: np.random.Generator, exports: pd.DataFrame) -> pd.DataFrame:
    """Split ~1 % of export rows into two shipments with the same total."""
    split = rng.random(len(exports)) < 0.01
    first_part = np.round(exports["export_value_eur"] * rng.uniform(0.2, 0.8, len(exports)), 2)
    extra = exports[split].assign(export_value_eur=first_part[split])
    remainder = exports.assign(
        export_value_eur=np.where(
            split, np.round(exports["export_value_eur"] - first_part, 2), exports["export_value_eur"]
        )
    )
    combined = pd.concat([remainder, extra])
    return combined.sort_values(["firm_id", "year", "destination"], kind="stable").reset_index(drop=True)


def _normalised(weights: dict) -> np.ndarray:
    values = np.array(list(weights.values()), dtype="float64")
    return values / values.sum()


def write_demo_data(
    out_dir: str | Path,
    n_firms: int = 10_000,
    seed: int = DEFAULT_SEED,
    messy: bool = False,
) -> dict[str, Path]:
    """Generate and write the landing CSVs, ``true_effects.csv`` and a README."""
    data = generate_demo_data(n_firms=n_firms, seed=seed, messy=messy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    landing = _landing_format(data)
    paths = {}
    for name, table in {**landing, "true_effects": data.true_effects}.items():
        paths[name] = out / f"{name}.csv"
        table.to_csv(paths[name], index=False, lineterminator="\n")
    paths["readme"] = out / "README.md"
    paths["readme"].write_text(_readme(n_firms, seed, messy, data), encoding="utf-8")
    return paths


def _landing_format(data: DemoData) -> dict[str, pd.DataFrame]:
    """Contract v1 text conventions: true/false, ISO dates, empty = not applicable."""
    firms = data.firms.assign(in_cluster=np.where(data.firms["in_cluster"], "true", "false"))
    participation = data.participation.assign(
        start_date=data.participation["start_date"].dt.strftime("%Y-%m-%d"),
        end_date=data.participation["end_date"].dt.strftime("%Y-%m-%d"),
        grant_eur=data.participation["grant_eur"].astype("Int64"),
        network_events=data.participation["network_events"].astype("Int64"),
    )
    financials = data.financials.assign(turnover_eur=data.financials["turnover_eur"].astype("int64"))
    return {"firms": firms, "financials": financials, "participation": participation, "exports": data.exports}


MESSY_NOTE = (
    "- `--messy`: about 1 % of export rows are split into two shipments of the same\n"
    "  firm-year-destination (legitimate duplicates, summed by the panel builder).\n"
)


def _readme(n_firms: int, seed: int, messy: bool, data: DemoData) -> str:
    years = data.financials["year"]
    return f"""# Synthetic demo data (not real firms)

Generated by `python -m analyses.demo_data --firms {n_firms} --seed {seed}{' --messy' if messy else ''}`:
{n_firms} fictitious firms, {years.min()}-{years.max()}, German NUTS-2 regions.
Deterministic: the same seed gives byte-identical files.

- `firms.csv`, `financials.csv`, `participation.csv`, `exports.csv`: landing files of
  inputs contract v1.
- `true_effects.csv`: the planted effects (sample ATT of the programme per service,
  outcome and `simple` / `dynamic` / `group` aggregation), computed by simulating every
  firm with and without the programme. A correct estimator should recover them; a naive
  comparison of participants with non-participants should not (selection on size,
  exporting and cluster membership; export trends differ by size and cluster).
{MESSY_NOTE if messy else ''}See the docstring of `analyses/demo_data.py` for the full design.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write seeded synthetic programme data.")
    parser.add_argument("--firms", type=int, default=10_000, help="number of firms")
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--messy", action="store_true", help="split some export rows into shipments")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = write_demo_data(args.out, n_firms=args.firms, seed=args.seed, messy=args.messy)
    print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
