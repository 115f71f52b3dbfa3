"""Seeded synthetic programme data with planted, known truths for every published estimand.

The generator writes the four landing files of the inputs contract v1 (``firms``,
``financials``, ``participation``, ``exports``) plus ``true_effects.csv``, so the
whole pipeline can be run, and its estimates checked, without confidential agency
data.  It reproduces what makes real evaluations hard:

* An unbalanced register.  About 15 % of the firms are founded during the panel (their
  accounts start in the founding year, they start as non-exporters and are small); firms
  close (about 3 % a year, more among small and young firms; closure does not depend on
  exporting or support).  Some firms' accounts start late: a
  few non-participants, and about 10 % of the participants, whose accounts begin one or
  two years before their programme (3 % only in the programme year, so they have no
  base period).  About 4 % of the participants were first supported before the panel's
  first year (already treated).
* Selection on observables that no logit in the estimator's covariates reproduces.  A
  firm's first service and cohort year are drawn jointly from a multinomial logit whose
  utilities are step functions and interactions of the firm's first-register-year
  characteristics: size thresholds at 10 and 50 employees, exporter status interacted
  with cluster membership and with size, a young-firm (< 5 years) term, and a start-up
  boost for entrants one or two years after founding.  Larger firms, cluster members and
  exporters join more often.
* Exporting is a persistent Markov process (not exporting / first year / established)
  with a latent firm propensity that is correlated with the covariates but, given them,
  independent of treatment.  Its trend rises with cluster membership and size, so
  parallel trends hold conditionally on the covariates but not unconditionally.  About
  half of new exporters stop within a year; values are log-normal with heavy tails; the
  number of destinations grows with value; destinations are sticky, EU-heavy firm
  preferences over a realistic list.
* Effects tied to every support episode (``EFFECT_PROFILES``, by years since the
  episode started).  Advisory and network add 2.5-5 points a year to the probability of
  (still) exporting, raise export value and (network most) the number of markets; grants
  add 7-14 points for three years and nothing afterwards, so their effect fades through
  the persistence of exporting.  The first episode's effect scales with its dose (first
  episode's advisory hours, network events or grant euros relative to a typical dose, to
  the power 0.7), the cohort (earlier is larger), the firm's size (smaller is larger) and
  cluster membership (network support does 1.5 times as much outside clusters, 0.6 times
  inside).  About 30 % of the supported firms later receive a second, different service
  (1-3 years on; 0.6 times its own profile), some repeat their service (0.3 times), and
  about 6 % start with a same-date bundle of two services.

Truth: the same firms and shocks are simulated twice with common random numbers
(observed = every episode's effects; untreated = nobody supported), both worlds' tables
go through ``build_firm_year_panel`` and every export outcome column of the panel is
differenced.  The estimand is the one the pipeline targets: treatment = the firm's first
service (its later services are part of the effect of starting with it), comparison =
never-served firms, and only firms ``analyses.evaluation.service_sample`` keeps (a base
period before support, not already treated, cohorts of at least 10 firms) count, per
outcome only firm-years where it is observed.  See :func:`true_effects` for the
aggregations.

``DemoData`` frames hold exactly what the CSV files hold, typed as the contract
layer hands clean tables on (dates as datetime64, NaN = not applicable).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import poisson

from analyses.evaluation import HEADLINE, EvaluationPlan, service_sample
from analyses.panel import EXPORT_OUTCOMES, PANEL_OUTCOMES, SERVICE_DOSE_COLUMN, SERVICES, build_firm_year_panel

DEFAULT_SEED = 20240601
COHORT_YEARS = tuple(range(2014, 2023))
PRE_PANEL_YEARS = 4  # already-treated firms started in one of the 4 years before the panel
NEVER_TREATED_SHARE = 0.62
#: the headline's horizon H: the event-study average over e = 0..H of the cohorts observed at every e
HEADLINE_HORIZON = EvaluationPlan.headline_horizon
HEADLINE_AGGREGATION = HEADLINE  # named as in estimates.csv

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
ENTRANT_SHARE = 0.15  # founded during the panel
EXIT_INTERCEPT, EXIT_SIZE_SLOPE = -3.6, -0.4  # logit of the yearly closure hazard: typical firm, per log size
LATE_ACCOUNTS_SHARE = 0.04  # non-participants whose accounts start after the panel's first year
#: participants whose accounts start 1-2 years before their programme, and only in its first year
PARTICIPANT_LATE_ACCOUNTS = (0.10, 0.03)

# Selection: utility slopes per service on the features of ``_selection_features``
# (employees >= 10, >= 50, exporter, exporter x cluster, exporter x 50+, cluster, age < 5,
# log turnover), all in the firm's first register year; service shares, cohort profile.
SELECTION_SLOPES = {
    "advisory": (0.5, 0.3, 0.5, 0.0, -0.5, 0.7, 0.3, 0.10),
    "network": (0.4, 0.6, 0.9, 0.5, 0.0, 1.0, -0.2, 0.05),
    "grant": (0.3, 0.7, 0.4, 0.0, 0.4, 0.6, 0.7, 0.15),
}
SERVICE_SHARES = {"advisory": 0.45, "network": 0.30, "grant": 0.25}
COHORT_PROFILE = (0.6, 0.8, 1.0, 1.1, 1.2, 1.2, 0.8, 1.0, 1.1)
PRE_PANEL_SHARE = 0.1  # weight of each pre-panel start year, relative to an average in-panel cohort year
STARTUP_BOOST = 0.7  # utility of support one or two years after founding

# Untreated export process (logit scale).
ENTRY_INTERCEPT = -2.6  # not exporting -> exporting
NEW_EXPORTER_INTERCEPT = -0.6  # first export year -> still exporting
ESTABLISHED_INTERCEPT = 2.3  # established -> still exporting
BURN_IN_YEARS = 15  # the chain runs this long at first-year conditions before the panel starts
ENTRANT_VALUE_DISCOUNT = -0.7  # log value in a firm's first export year
DESTINATION_RATE_INTERCEPT, DESTINATION_RATE_SLOPE = 0.3, 0.45  # log Poisson mean vs log value

# Effects by years since an episode started, 0, 1, 2, ... (last entry repeats): export
# probability (points), log export value, log Poisson mean of the destination count.
EFFECT_PROFILES = {
    "advisory": {"probability": (0.025, 0.04, 0.05), "value": (0.05, 0.10, 0.15),
                 "markets": (0.03, 0.05, 0.05)},
    "network": {"probability": (0.03, 0.05), "value": (0.08, 0.12),
                "markets": (0.06, 0.10, 0.12)},
    "grant": {"probability": (0.14, 0.12, 0.07, 0.0), "value": (0.18, 0.15, 0.08, 0.0),
              "markets": (0.08, 0.08, 0.04, 0.0)},
}
EFFECT_KINDS = ("probability", "value", "markets")
#: effect multiplier of each service inside and outside clusters (network matters more outside)
CLUSTER_EFFECT = {"advisory": (1.1, 0.9), "network": (1.5, 0.6), "grant": (1.0, 1.0)}  # (outside, inside)
DOSE_ELASTICITY, DOSE_FACTOR_RANGE = 0.7, (0.3, 3.0)
SECOND_SERVICE_SHARE, SECOND_SERVICE_SCALE = 0.30, 0.6
REPEAT_SHARE, REPEAT_SCALE = 0.20, 0.3
BUNDLE_SHARE = 0.06  # first episode together with a second service on the same date
DOSE_REFERENCE = {"advisory": 35.0, "network": 2.8, "grant": 20_000.0}  # typical episode dose
SERVICE_DOSE = {  # (median, log sd, min, max, rounding step) of the dose per episode
    "advisory": (35.0, 0.6, 10.0, 120.0, 0.5),
    "grant": (20_000.0, 0.9, 5_000.0, 150_000.0, 100.0),
}
PROGRAMME_NAMES = {"advisory": "Go International", "network": "Export Network",
                   "grant": "Market Entry Grant"}
EPISODE_DAYS = {"advisory": (60, 300), "network": (365, 1095), "grant": (180, 720)}

LANDING_FILES = ("firms", "financials", "participation", "exports")
TRUTH_COLUMNS = ("treatment", "outcome", "aggregation", "event_time", "group", "year", "subgroup",
                 "true_effect", "n_treated")
#: employees in the year before support: micro, small, medium (EU SME classes)
SIZE_CLASSES = ((0, 10, "micro"), (10, 50, "small"), (50, np.inf, "medium"))


@dataclass(frozen=True)
class DemoData:
    """The four landing tables, typed as clean tables, and the planted truth."""

    firms: pd.DataFrame
    financials: pd.DataFrame
    participation: pd.DataFrame
    exports: pd.DataFrame
    true_effects: pd.DataFrame
    #: planted truths of the mechanism models (:func:`mechanism_truths`), ``TRUTH_COLUMNS``
    mechanism_truths: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TRUTH_COLUMNS)))


@dataclass(frozen=True)
class _Firms:
    """Firm-level draws shared by both worlds; years are indices into the panel years."""

    table: pd.DataFrame
    log_size: np.ndarray  # continuous log employees in the first register year
    productivity: np.ndarray  # log domestic turnover per employee
    in_cluster: np.ndarray
    export_oriented: np.ndarray
    age: np.ndarray  # in the first register year
    entry: np.ndarray  # first register year (founding year of entrants, else 0)
    exit: np.ndarray  # last accounts year (closure, else the last panel year)


@dataclass(frozen=True)
class _Treatment:
    """Every support episode: the participation table and, aligned with it, what it does."""

    episodes: pd.DataFrame
    firm: np.ndarray  # firm index of each episode
    service: np.ndarray  # index into SERVICES
    start: np.ndarray  # panel year index of the start (negative: before the panel)
    scale: np.ndarray  # effect multiplier of the episode
    accounts_from: np.ndarray  # per firm: first accounts year (late accounts moved it)

    def effect(self, kind: str, t: int, n: int) -> np.ndarray:
        """Summed effect of ``kind`` of every episode started by year ``t``, per firm."""
        since = t - self.start
        active = since >= 0
        table = _EFFECT_TABLES[kind]
        size = table[self.service[active], np.minimum(since[active], table.shape[1] - 1)]
        return np.bincount(self.firm[active], weights=size * self.scale[active], minlength=n)


def generate_demo_data(
    n_firms: int = 10_000,
    first_year: int = 2012,
    last_year: int = 2024,
    seed: int = DEFAULT_SEED,
    messy: bool = False,
    plan: EvaluationPlan | None = None,
) -> DemoData:
    """Draw an unbalanced firm-year data set and its true effects; same seed, same data.

    The truths are for the firms and cohorts ``plan`` (default: ``EvaluationPlan()``) estimates on.
    ``messy`` splits about 1 % of export rows into two shipments of the same
    firm-year-destination (legitimate duplicates the panel builder sums).
    """
    rng = np.random.default_rng(seed)
    tables = _simulate_worlds(rng, n_firms, first_year, last_year)
    truth = true_effects(tables["observed"], tables["untreated"], plan=plan)
    observed_tables = tables["observed"]
    exports = _split_shipments(rng, observed_tables["exports"]) if messy else observed_tables["exports"]
    return DemoData(
        firms=observed_tables["firms"],
        financials=observed_tables["financials"],
        participation=observed_tables["participation"],
        exports=exports,
        true_effects=truth,
        mechanism_truths=mechanism_truths(observed_tables, tables["untreated"], tables["without_later_services"]),
    )


def demo_worlds(
    n_firms: int = 10_000, first_year: int = 2012, last_year: int = 2024, seed: int = DEFAULT_SEED
) -> dict[str, dict[str, pd.DataFrame]]:
    """The worlds of :func:`generate_demo_data` (same arguments, same draws): ``{"observed": tables,
    "untreated": tables, "without_later_services": tables}``, each the four clean tables; ``untreated`` has
    the same firms, accounts and episodes, with exports as they would have been without any support, and
    ``without_later_services`` as they would have been with only each firm's first service. ``observed`` is
    the demo data.
    """
    return _simulate_worlds(np.random.default_rng(seed), n_firms, first_year, last_year)


def _simulate_worlds(rng: np.random.Generator, n_firms: int, first_year: int, last_year: int) -> dict:
    """Both worlds' clean tables, driven by common random numbers (see the module docstring)."""
    if n_firms < 50:
        raise ValueError(f"n_firms must be at least 50 to populate the cohorts, got {n_firms}")
    if not first_year < COHORT_YEARS[0] <= COHORT_YEARS[-1] < last_year:
        raise ValueError(
            f"years {first_year}-{last_year} must start before {COHORT_YEARS[0]} "
            f"and end after {COHORT_YEARS[-1]} (the programme cohorts)"
        )
    years = np.arange(first_year, last_year + 1)
    firms = _draw_firms(rng, n_firms, years)
    employees, domestic = _draw_accounts(rng, firms, years.size)
    exporting = _ExportProcess(rng, firms, domestic)
    untreated = exporting.path(lambda t: 0.0)
    treatment = _assign_treatment(rng, firms, employees, domestic, exporting, untreated, years)
    observed = exporting.path(lambda t: treatment.effect("probability", t, n_firms))
    first_only = _without_later_services(treatment)
    without_later = exporting.path(lambda t: first_only.effect("probability", t, n_firms))

    rows = {"untreated": [], "observed": [], "without_later_services": []}
    for t in range(years.size):
        outcomes = [
            exporting.outcome(t, untreated[:, t], 0.0, 0.0),
            exporting.outcome(t, observed[:, t], treatment.effect("value", t, n_firms),
                              treatment.effect("markets", t, n_firms)),
            exporting.outcome(t, without_later[:, t], first_only.effect("value", t, n_firms),
                              first_only.effect("markets", t, n_firms)),
        ]
        for world, world_rows in zip(rows, exporting.destination_rows(t, outcomes)):
            rows[world].append(world_rows)
    return {
        world: _world_tables(firms, employees, domestic, world_rows, years, treatment)
        for world, world_rows in rows.items()
    }


def _draw_firms(rng: np.random.Generator, n: int, years: np.ndarray) -> _Firms:
    n_years = years.size
    nace2 = rng.choice(list(NACE2_WEIGHTS), size=n, p=_normalised(NACE2_WEIGHTS))
    region = rng.choice(list(NUTS2_WEIGHTS), size=n, p=_normalised(NUTS2_WEIGHTS))
    export_oriented = np.isin(nace2, list(EXPORT_ORIENTED_NACE2))
    entrant = rng.random(n) < ENTRANT_SHARE
    entry = np.where(entrant, rng.integers(1, n_years - 1, n), 0)
    log_size = np.where(
        entrant, rng.normal(np.log(5.0), 0.8, n), rng.normal(np.log(12.0), 1.0, n)
    ).clip(np.log(0.6), np.log(249.0))
    centred_size = log_size - np.log(12.0)
    in_cluster = rng.random(n) < expit(-1.3 + 0.35 * centred_size + 0.6 * export_oriented)
    productivity = np.log(110_000.0) + 0.25 * export_oriented + rng.normal(0.0, 0.45, n)
    age = np.where(entrant, 0, np.minimum(np.round(rng.lognormal(np.log(14.0), 0.7, n)), 80) + 1).astype("int64")
    founded = (years[entry] - age).astype("int64")

    hazard = expit(EXIT_INTERCEPT + EXIT_SIZE_SLOPE * centred_size)
    since_entry = np.arange(n_years) - entry[:, None]
    yearly = hazard[:, None] + 0.04 * (entrant[:, None] & (since_entry < 3))
    closes = (rng.random((n, n_years)) < yearly) & (since_entry >= 0)
    exit_ = np.where(closes.any(axis=1), closes.argmax(axis=1), n_years - 1)

    table = pd.DataFrame(
        {
            "firm_id": np.array([f"F{i:06d}" for i in range(1, n + 1)], dtype=object),
            "nace2": nace2.astype(object),
            "region": region.astype(object),
            "founded_year": founded,
            "in_cluster": in_cluster,
        }
    )
    return _Firms(table, log_size, productivity, in_cluster, export_oriented, age, entry, exit_)


def _draw_accounts(
    rng: np.random.Generator, firms: _Firms, n_years: int
) -> tuple[np.ndarray, np.ndarray]:
    """Employees (int) and domestic turnover paths from the first register year on.

    Firm growth rate plus AR(1) noise; young entrants grow faster in their first years.
    """
    n = firms.log_size.size
    growth = rng.normal(0.01, 0.02, n)
    shocks = _ar1(rng, n, n_years, rho=0.6, sd=0.08)
    since_entry = np.maximum(np.arange(n_years) - firms.entry[:, None], 0)
    youth = 0.4 * (1 - np.exp(-since_entry / 3.0)) * (firms.age == 0)[:, None]
    log_size = firms.log_size[:, None] + growth[:, None] * since_entry + youth + shocks
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

    States: 0 not exporting, 1 first export year, 2 established exporter.  Incumbents enter
    the panel from a burn-in at first-year conditions; entrants start as non-exporters in
    their founding year.
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
        self.trend = -0.02 + 0.10 * firms.in_cluster + 0.06 * centred_size
        self.entry = np.where(firms.age == 0, firms.entry, -1)  # founding year index of entrants
        self.transition_draws = rng.random((n, n_years))
        burn_in_draws = rng.random((BURN_IN_YEARS, n))
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
        state = np.zeros(n, dtype=np.int8)
        for draws in burn_in_draws:
            state = self._transition(0, state, 0.0, draws)
        self.before_panel = state

    def path(self, uplift) -> np.ndarray:
        """States (firms x years) when ``uplift(t)`` is added to the probability of exporting."""
        state = self.before_panel
        states = np.empty(self.transition_draws.shape, dtype=np.int8)
        for t in range(states.shape[1]):
            state = self._transition(t, np.where(self.entry == t, 0, state).astype(np.int8), uplift(t))
            states[:, t] = state
        return states

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

    def outcome(self, t: int, state: np.ndarray, value_effect, market_effect) -> _YearOutcome:
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
    """Services x years since the start 0..horizon-1; each profile's last entry holds afterwards."""
    profiles = [EFFECT_PROFILES[s][kind] for s in SERVICES]
    horizon = max(len(p) for p in profiles)
    return np.array([list(p) + [p[-1]] * (horizon - len(p)) for p in profiles])


_EFFECT_TABLES = {kind: _effect_table(kind) for kind in EFFECT_KINDS}


def _selection_features(employees: np.ndarray, log_turnover: np.ndarray, exporter: np.ndarray,
                        in_cluster: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Firms x features of ``SELECTION_SLOPES``: thresholds and interactions, not a linear index."""
    medium = employees >= 50
    return np.column_stack(
        [employees >= 10, medium, exporter, exporter & in_cluster, exporter & medium, in_cluster,
         age < 5, log_turnover - log_turnover.mean()]
    ).astype("float64")


def _assign_treatment(
    rng: np.random.Generator,
    firms: _Firms,
    employees: np.ndarray,
    domestic: np.ndarray,
    exporting: _ExportProcess,
    untreated: np.ndarray,
    years: np.ndarray,
) -> _Treatment:
    """Joint (first service, cohort) draw, then the firm's episodes and their effect sizes."""
    n = employees.shape[0]
    rows = np.arange(n)
    first = firms.entry
    state_first = untreated[rows, first]
    export_value = np.where(state_first > 0, np.exp(exporting.log_value_base[rows, first]), 0.0)
    turnover_first = domestic[rows, first] + export_value
    features = _selection_features(employees[rows, first], np.log1p(turnover_first), state_first > 0,
                                   firms.in_cluster, firms.age)

    cohort_years = np.array([*range(years[0] - PRE_PANEL_YEARS, years[0]), *COHORT_YEARS])
    cohort_index = cohort_years - years[0]
    pre_panel = cohort_index < 0
    profile = np.r_[np.full(pre_panel.sum(), PRE_PANEL_SHARE), np.array(COHORT_PROFILE) / np.mean(COHORT_PROFILE)]
    alternatives = [(s, c) for s in range(len(SERVICES)) for c in range(cohort_years.size)]
    service_of, cohort_of = (np.array(column) for column in zip(*alternatives))
    slopes = np.array([SELECTION_SLOPES[SERVICES[s]] for s in service_of])
    intercepts = np.log(np.array([SERVICE_SHARES[s] for s in SERVICES])[service_of] * profile[cohort_of])
    start = cohort_index[cohort_of]
    since_entry = start[None, :] - first[:, None]
    entrant = (firms.age == 0)[:, None]
    feasible = np.where(entrant, since_entry >= 1, True) & (start[None, :] <= firms.exit[:, None])
    utilities = features @ slopes.T + intercepts + STARTUP_BOOST * (entrant & (since_entry <= 2))
    weights_base = np.where(feasible, np.exp(utilities), 0.0)

    def never_share(shift: float) -> float:
        return float(np.mean(1.0 / (1.0 + np.exp(shift) * weights_base.sum(axis=1))))

    low, high = -20.0, 20.0
    for _ in range(60):  # never_share falls as the shift rises
        middle = (low + high) / 2
        low, high = (middle, high) if never_share(middle) > NEVER_TREATED_SHARE else (low, middle)
    probabilities = np.column_stack([np.ones(n), weights_base * np.exp((low + high) / 2)])
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    choice = (rng.random(n)[:, None] > probabilities.cumsum(axis=1)).sum(axis=1)
    choice = np.minimum(choice, len(alternatives))  # guard the float round-off at the top end
    treated = choice > 0
    service = np.where(treated, service_of[np.maximum(choice - 1, 0)], -1)
    cohort = np.where(treated, start[np.maximum(choice - 1, 0)], 0)

    accounts_from = _late_accounts(rng, firms, treated, cohort, years.size)
    size_gap = np.log1p(employees[rows, first]) - np.log1p(employees[rows, first]).mean()
    firm_scale = (
        np.clip(1.25 - 0.06 * (years[0] + cohort - COHORT_YEARS[0]), 0.7, 1.4)
        * np.clip(1.2 - 0.3 * size_gap, 0.6, 1.8)
    )
    return _draw_episodes(rng, firms, service, cohort, firm_scale, accounts_from, years)


def _late_accounts(rng: np.random.Generator, firms: _Firms, treated: np.ndarray, cohort: np.ndarray,
                   n_years: int) -> np.ndarray:
    """First accounts year: participants' accounts start 1-2 years before (or in) the programme year.

    A few non-participants' accounts also start late, so that late starters are not all participants.
    """
    n = treated.size
    incumbent = firms.age > 0
    draw = rng.random(n)
    before, at_start = PARTICIPANT_LATE_ACCOUNTS
    eligible = treated & incumbent & (cohort >= 3)
    late = np.where(draw < before, cohort - rng.integers(1, 3, n), np.where(draw < before + at_start, cohort, -1))
    late_start = rng.integers(2, n_years - 2, n)
    accounts_from = np.where(eligible & (late >= 0), late, firms.entry)
    stranger = ~treated & incumbent & (draw < LATE_ACCOUNTS_SHARE)
    return np.where(stranger, np.minimum(late_start, firms.exit), accounts_from)


def _draw_episodes(
    rng: np.random.Generator,
    firms: _Firms,
    service: np.ndarray,
    cohort: np.ndarray,
    firm_scale: np.ndarray,
    accounts_from: np.ndarray,
    years: np.ndarray,
) -> _Treatment:
    """First episode in the cohort year; same-date bundles, later second services and repeats.

    Later episodes start before the firm closes and by the last panel year.
    """
    treated = np.flatnonzero(service >= 0)
    k = treated.size
    draw = rng.random(k)
    other = (service[treated] + rng.integers(1, len(SERVICES), k)) % len(SERVICES)
    kinds = (  # (firms, service, start year index, effect relative to the first episode's)
        (treated, service[treated], cohort[treated], np.ones(k)),
        (treated, other, cohort[treated], np.full(k, SECOND_SERVICE_SCALE)),
        (treated, other, cohort[treated] + rng.integers(1, 4, k), np.full(k, SECOND_SERVICE_SCALE)),
        (treated, service[treated], cohort[treated] + rng.integers(1, 3, k), np.full(k, REPEAT_SCALE)),
    )
    bundle = draw < BUNDLE_SHARE
    second = (draw >= BUNDLE_SHARE) & (draw < BUNDLE_SHARE + SECOND_SERVICE_SHARE)
    repeat = rng.random(k) < REPEAT_SHARE
    keep = (np.ones(k, bool), bundle, second, repeat)
    firm, episode_service, start_index, relative = (
        np.concatenate([part[i][mask] for part, mask in zip(kinds, keep)]) for i in range(4)
    )
    is_first = np.concatenate([np.ones(k, bool), *[np.zeros(mask.sum(), bool) for mask in keep[1:]]])
    feasible = is_first | ((start_index <= firms.exit[firm]) & (start_index < years.size))
    firm, episode_service, start_index, relative, is_first = (
        column[feasible] for column in (firm, episode_service, start_index, relative, is_first)
    )

    start_year = years[0] + start_index
    start = pd.to_datetime(pd.DataFrame({"year": start_year, "month": 1, "day": 1}))
    offset = rng.integers(0, 365, firm.size)
    start = start + pd.to_timedelta(offset, unit="D")
    same_date = ~is_first & (start_index == cohort[firm])  # a bundle starts with the first episode
    first_start = pd.Series(start[is_first].to_numpy(), index=firm[is_first])
    start = start.where(~same_date, first_start.reindex(firm).to_numpy())
    low_high = np.array([EPISODE_DAYS[s] for s in SERVICES])[episode_service]
    end = start + pd.to_timedelta(rng.integers(low_high[:, 0], low_high[:, 1] + 1), unit="D")
    end = end.where(end <= pd.Timestamp(year=int(years[-1]), month=12, day=31))

    names = np.array(SERVICES, dtype=object)[episode_service]
    doses = {
        "advisory_hours": np.where(names == "advisory", _dose(rng, "advisory", firm.size), np.nan),
        "grant_eur": np.where(names == "grant", _dose(rng, "grant", firm.size), np.nan),
        "network_events": np.where(
            names == "network", np.minimum(1 + rng.poisson(1.8, firm.size), 8), np.nan
        ).astype("float64"),
    }
    dose = np.select([names == s for s in SERVICES], [doses[SERVICE_DOSE_COLUMN[s]] / DOSE_REFERENCE[s] for s in SERVICES])
    cluster = np.array([CLUSTER_EFFECT[s] for s in SERVICES])[episode_service, firms.in_cluster[firm].astype(int)]
    scale = firm_scale[firm] * relative * cluster * np.clip(dose ** DOSE_ELASTICITY, *DOSE_FACTOR_RANGE)

    episodes = pd.DataFrame(
        {
            "firm_id": firms.table["firm_id"].to_numpy()[firm],
            "programme": [f"{PROGRAMME_NAMES[s]} {y}" for s, y in zip(names, start_year)],
            "service": names,
            "start_date": start.to_numpy(dtype="datetime64[ns]"),
            "end_date": end.to_numpy(dtype="datetime64[ns]"),
            **doses,
        }
    )
    order = np.lexsort((episode_service, episodes["start_date"].to_numpy(), firm))
    return _Treatment(
        episodes=episodes.iloc[order].reset_index(drop=True),
        firm=firm[order],
        service=episode_service[order],
        start=start_index[order],
        scale=scale[order],
        accounts_from=accounts_from,
    )


def _dose(rng: np.random.Generator, service: str, size: int) -> np.ndarray:
    median, log_sd, low, high, step = SERVICE_DOSE[service]
    draw = rng.lognormal(np.log(median), log_sd, size).clip(low, high)
    return np.round(draw / step) * step


def _world_tables(
    firms: _Firms,
    employees: np.ndarray,
    domestic: np.ndarray,
    rows: list[tuple[np.ndarray, ...]],
    years: np.ndarray,
    treatment: _Treatment,
) -> dict[str, pd.DataFrame]:
    """Typed clean tables of one world (observed or untreated); turnover includes exports.

    Only the firm's accounts years (first accounts year to closure) have accounts and exports.
    """
    n, n_years = employees.shape
    firm, year_index, destination, amount = (np.concatenate(parts) for parts in zip(*rows))
    in_accounts = (year_index >= treatment.accounts_from[firm]) & (year_index <= firms.exit[firm])
    order = np.lexsort((destination, year_index, firm))
    order = order[in_accounts[order]]
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
    accounts = (
        (np.arange(n_years) >= treatment.accounts_from[:, None]) & (np.arange(n_years) <= firms.exit[:, None])
    ).ravel()
    financials = pd.DataFrame(
        {
            "firm_id": np.repeat(firm_ids, n_years)[accounts],
            "year": np.tile(years, n).astype("int64")[accounts],
            "employees": employees.ravel()[accounts],
            "turnover_eur": np.round(domestic.ravel() + exported)[accounts],
        }
    )
    return {
        "firms": firms.table,
        "financials": financials.reset_index(drop=True),
        "participation": treatment.episodes,
        "exports": exports,
    }


def true_effects(
    observed: dict[str, pd.DataFrame],
    untreated: dict[str, pd.DataFrame],
    horizon: int = HEADLINE_HORIZON,
    plan: EvaluationPlan | None = None,
) -> pd.DataFrame:
    """Planted effects of starting with each service, for every estimand the pipeline publishes.

    ``observed`` and ``untreated`` are the four clean tables of the two worlds (the same
    firms, accounts and episodes; exports without any support in ``untreated``).  Both go
    through ``build_firm_year_panel`` and every export outcome column of the panel
    (``PANEL_OUTCOMES`` and ``EXPORT_OUTCOMES`` found in it) is differenced.  For service
    ``s`` the firms and cohorts are those ``analyses.evaluation.service_sample`` keeps
    under ``plan`` (default plan: never-served comparisons, cohort floor 10); per outcome
    only firm-years where the observed outcome is known count (and where the untreated
    one is too), with time-varying covariates only those of firms whose outcome is also
    known in the base year g - 1 (``att_gt`` reads covariates there; :func:`_in_cells`),
    and cohorts treated in the outcome's first observed year are dropped, as ``att_gt``
    does.  Cohort weights are the cohort's firms with the outcome observed, as ``aggte``
    weights them.  Outcome-regression CS-DiD on the observed world minus the same on the
    untreated world equals these truths exactly (``tests/test_demo_data.py``).

    Rows (``TRUTH_COLUMNS``; ``subgroup`` empty unless stated):

    * ``attgt``: ATT(g,t), the mean effect on cohort ``group``'s firms observed in ``year``
      (``event_time`` = year - group; zero before the programme by construction), for
      years after the outcome's first observed year (a base period exists);
    * ``simple``: post-programme cells weighted by cohort size (R ``aggte(type="simple")``);
    * ``dynamic``: per event time, the cohort-size weighted mean over the cohorts observed
      then (``aggte(type="dynamic")``; pre-programme event times are zero);
    * ``group``: per cohort, the mean of its post-programme cells; ``calendar``: per year,
      the cohort-size weighted mean of that year's post-programme cells;
    * ``headline``: ``aggte(type="dynamic", balance_e=H, min_e=0, max_e=H)`` with H =
      ``horizon``: only cohorts observed at every e in 0..H; one row per e and the overall
      mean over e (``event_time`` empty).  Also per ``subgroup`` of the treated firms:
      ``in_cluster=0/1``, ``size_class=micro/small/medium`` (employees in the year before
      support, before the plan's anticipation years: < 10, 10-49, 50+) and ``exported_before=0/1``
      (exported in that year); the estimator compares each with firms of the same label in that year;
    * ``dose_slope``: among the headline's firms, the least-squares slope of the firm's mean
      effect over e = 0..H on its first episode's dose of ``s`` (advisory hours, network
      events or grant euros): effect per unit of dose.

    ``n_treated`` counts the treated firms behind the row (for ``attgt``, those observed).
    Raises ``AssertionError`` if the two worlds' panels do not have the same firm-years.
    """
    panel = build_firm_year_panel(**observed).panel
    counterfactual = build_firm_year_panel(**untreated).panel
    if not panel[["firm_id", "year"]].equals(counterfactual[["firm_id", "year"]]):
        raise AssertionError("the two worlds must have the same firm-years")
    known = {*PANEL_OUTCOMES, *EXPORT_OUTCOMES}
    outcomes = [column for column in panel.columns if column in known]
    effect = panel[outcomes].astype("float64") - counterfactual[outcomes].astype("float64")
    plan = plan or EvaluationPlan()
    frames = _service_truths(panel, effect, _first_episode_doses(observed["participation"]), plan, horizon)
    return _tidy(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TRUTH_COLUMNS)), outcomes)


def _service_truths(panel: pd.DataFrame, effect: pd.DataFrame, doses: dict[str, pd.Series], plan: EvaluationPlan,
                    horizon: int) -> list[pd.DataFrame]:
    """Truth rows of starting with each service for every column of ``effect`` (observed minus counterfactual,
    aligned with ``panel``), on the firms and cohorts ``service_sample`` keeps (see :func:`true_effects`)."""
    outcomes = list(effect.columns)
    frames = []
    for service in SERVICES:
        sample, _ = service_sample(panel, service, plan)
        seen = sample[outcomes].notna()
        years = sample["year"].to_numpy()
        periods = {o: (years[seen[o]].min(), years[seen[o]].max()) for o in outcomes if seen[o].any()}
        treated = sample["cohort"].to_numpy() > 0
        rows = sample.loc[treated, ["firm_id", "year", "cohort"]].join(
            _treated_firm_traits(sample, doses[service], plan.anticipation), on="firm_id"
        )
        effects = effect.loc[rows.index].where(seen.loc[rows.index])
        in_cells = _in_cells(sample, seen, rows, plan)
        for outcome, (first, last) in periods.items():
            keep = (rows["cohort"] > first + plan.anticipation).to_numpy()
            truth = _aggregate(rows.loc[keep], effects.loc[keep, outcome], in_cells.loc[keep, outcome].to_numpy(),
                               first, last, horizon)
            if len(truth):
                frames.append(truth.assign(treatment=service, outcome=outcome))
    return frames


def _in_cells(sample: pd.DataFrame, seen: pd.DataFrame, rows: pd.DataFrame, plan: EvaluationPlan) -> pd.DataFrame:
    """Per outcome, whether a treated firm-year enters its ATT(g,t) cell.

    With time-varying covariates (``covariate_timing="base_period"``) ``att_gt`` reads covariates in the
    cell's base year ``g - 1 - anticipation``, so a firm whose outcome is not observed then (e.g. a window
    outcome of a firm whose accounts start three years before its programme) leaves the cells from its
    start on; it still counts in its cohort's size. With first-year snapshots every observed year counts.
    """
    if plan.covariate_timing != "base_period" or not plan.covariates:
        return pd.DataFrame(True, index=rows.index, columns=seen.columns)
    by_firm_year = seen.set_index([sample["firm_id"], sample["year"]])
    base_year = rows["cohort"] - 1 - plan.anticipation
    at_base = by_firm_year.reindex(pd.MultiIndex.from_arrays([rows["firm_id"], base_year]), fill_value=False)
    started = (rows["year"] > base_year).to_numpy()[:, None]
    return pd.DataFrame(at_base.to_numpy(dtype=bool) | ~started, index=rows.index, columns=seen.columns)


def _first_episode_doses(participation: pd.DataFrame) -> dict[str, pd.Series]:
    """Per service: each firm's dose in its first episode of that service, by firm_id."""
    ordered = participation.sort_values(["firm_id", "start_date"], kind="stable")
    return {
        service: ordered.loc[ordered["service"] == service].drop_duplicates("firm_id")
        .set_index("firm_id")[SERVICE_DOSE_COLUMN[service]]
        for service in SERVICES
    }


_SUBGROUPS = ("in_cluster", "size_class", "exported_before")


def _treated_firm_traits(sample: pd.DataFrame, dose: pd.Series, anticipation: int) -> pd.DataFrame:
    """One row per treated firm: ``_SUBGROUPS`` labels from the year before support (before the plan's anticipation
    years, as ``analyses.mechanisms.subgroups`` labels them), and its first dose."""
    before = sample.loc[(sample["cohort"] > 0)
                        & (sample["year"] == sample["cohort"] - 1 - anticipation)].set_index("firm_id")
    employees = before["employees"].to_numpy()
    size_class = np.select([(low <= employees) & (employees < high) for low, high, _ in SIZE_CLASSES],
                           [label for _, _, label in SIZE_CLASSES], "")
    return pd.DataFrame(
        {
            "in_cluster": before["in_cluster"].astype(int).astype(str),
            "size_class": size_class,
            "exported_before": before["exporter"].map(lambda value: "" if pd.isna(value) else str(int(value))),
            "dose": dose.reindex(before.index).to_numpy(dtype="float64"),
        },
        index=before.index,
    )


def _aggregate(rows: pd.DataFrame, effect: pd.Series, in_cells: np.ndarray, first: int, last: int,
               horizon: int) -> pd.DataFrame:
    """Every truth row of one service and outcome from its treated firm-years (see ``true_effects``);
    ``in_cells`` marks the firm-years that enter their ATT(g,t) cell (:func:`_in_cells`)."""
    observed = effect.notna().to_numpy()
    rows, in_cells = rows.loc[observed], in_cells[observed]
    effect = effect.to_numpy()[observed]
    if not len(rows):
        return pd.DataFrame()
    cells = _Cells.of(rows, effect, in_cells, first)
    out = [
        pd.DataFrame({"group": cells.group, "year": cells.year, "event_time": cells.year - cells.group,
                      "true_effect": cells.att, "n_treated": cells.n_observed, "aggregation": "attgt"}),
        cells.weighted(cells.year >= cells.group, None).assign(aggregation="simple"),
        cells.weighted(None, "event_time").assign(aggregation="dynamic"),
        cells.cohort_means().assign(aggregation="group"),
        cells.weighted(cells.year >= cells.group, "year").assign(aggregation="calendar"),
        cells.headline(last, horizon, per_event_time=True),
    ]
    for trait in _SUBGROUPS:
        labels = rows[trait].to_numpy()
        for label in sorted(set(labels) - {""}):
            member = labels == label
            out.append(_Cells.of(rows.loc[member], effect[member], in_cells[member], first).headline(last, horizon)
                       .assign(subgroup=f"{trait}={label}"))
    out.append(_dose_slope(rows.loc[in_cells], effect[in_cells], last, horizon))
    return pd.concat([frame for frame in out if len(frame)], ignore_index=True)


@dataclass(frozen=True)
class _Cells:
    """ATT(g,t) cells with a base period, and the cohort sizes that weight them (``aggte``'s ``pg``)."""

    group: np.ndarray
    year: np.ndarray
    att: np.ndarray
    n_observed: np.ndarray
    size: dict

    @classmethod
    def of(cls, rows: pd.DataFrame, effect: np.ndarray, in_cells: np.ndarray, first: int) -> _Cells:
        """Cells from the firm-years ``in_cells``; cohort sizes from every firm with the outcome observed."""
        cohort, year = rows["cohort"].to_numpy(), rows["year"].to_numpy()
        size = rows.groupby("cohort")["firm_id"].nunique().to_dict()
        in_cell = (year > first) & in_cells
        keys, inverse = np.unique(cohort[in_cell] * 10_000 + year[in_cell], return_inverse=True)
        count = np.bincount(inverse, minlength=len(keys))
        att = np.bincount(inverse, weights=effect[in_cell], minlength=len(keys)) / count
        return cls(keys // 10_000, keys % 10_000, att, count, size)

    def weighted(self, mask: np.ndarray | None, by: str | None) -> pd.DataFrame:
        """Cohort-size weighted mean of the cells in ``mask``, overall or per ``by`` (event_time, year)."""
        mask = np.ones(self.group.size, bool) if mask is None else mask
        group, year, att = self.group[mask], self.year[mask], self.att[mask]
        if group.size == 0:
            return pd.DataFrame()
        key = {"event_time": year - group, "year": year, None: np.zeros(group.size, int)}[by]
        weight = np.array([self.size[g] for g in group], dtype="float64")
        keys, inverse = np.unique(key, return_inverse=True)
        value = np.bincount(inverse, weights=weight * att) / np.bincount(inverse, weights=weight)
        firms = [sum(self.size[g] for g in set(group[inverse == i])) for i in range(len(keys))]
        table = pd.DataFrame({"true_effect": value, "n_treated": firms})
        return table.assign(**{by: keys}) if by else table

    def cohort_means(self) -> pd.DataFrame:
        """Per cohort, the unweighted mean of its post-programme cells (``aggte(type="group")``)."""
        post = self.year >= self.group
        keys, inverse = np.unique(self.group[post], return_inverse=True)
        value = np.bincount(inverse, weights=self.att[post]) / np.bincount(inverse)
        return pd.DataFrame({"group": keys, "true_effect": value, "n_treated": [self.size[g] for g in keys]})

    def headline(self, last: int, horizon: int, per_event_time: bool = False) -> pd.DataFrame:
        """Balanced event study over e = 0..H (cohorts observed at every e); overall = mean over e."""
        event_time = self.year - self.group
        by_e = self.weighted((last - self.group >= horizon) & (event_time >= 0) & (event_time <= horizon),
                             "event_time")
        if by_e.empty:
            return by_e
        overall = pd.DataFrame({"true_effect": [by_e["true_effect"].mean()], "n_treated": [by_e["n_treated"].max()]})
        rows = pd.concat([overall, by_e] if per_event_time else [overall], ignore_index=True)
        return rows.assign(aggregation=HEADLINE_AGGREGATION)


def _dose_slope(rows: pd.DataFrame, effect: np.ndarray, last: int, horizon: int) -> pd.DataFrame:
    """Least-squares slope of the headline firms' mean effect over e = 0..H on their first dose."""
    event_time = (rows["year"] - rows["cohort"]).to_numpy()
    window = ((last - rows["cohort"]).to_numpy() >= horizon) & (event_time >= 0) & (event_time <= horizon)
    per_firm = pd.DataFrame({"firm_id": rows["firm_id"].to_numpy()[window], "effect": effect[window],
                             "dose": rows["dose"].to_numpy()[window]}).groupby("firm_id").mean().dropna()
    if len(per_firm) < 3 or per_firm["dose"].std() == 0:
        return pd.DataFrame()
    slope = np.polyfit(per_firm["dose"].to_numpy(), per_firm["effect"].to_numpy(), 1)[0]
    return pd.DataFrame({"true_effect": [slope], "n_treated": [len(per_firm)], "aggregation": ["dose_slope"]})


_AGGREGATION_ORDER = ("simple", HEADLINE_AGGREGATION, "dynamic", "group", "calendar", "attgt", "dose_slope")


def _tidy(truth: pd.DataFrame, outcomes: list[str]) -> pd.DataFrame:
    """``TRUTH_COLUMNS`` in a fixed order: service, outcome, aggregation, subgroup, keys."""
    for column in ("event_time", "group", "year"):
        truth[column] = truth[column].astype("Int64") if column in truth else pd.array([pd.NA] * len(truth), "Int64")
    truth["subgroup"] = truth["subgroup"].fillna("") if "subgroup" in truth else ""
    truth["n_treated"] = truth["n_treated"].astype("int64")
    order = [
        truth["treatment"].map({s: i for i, s in enumerate(SERVICES)}),
        truth["outcome"].map({o: i for i, o in enumerate(outcomes)}),
        truth["aggregation"].map({a: i for i, a in enumerate(_AGGREGATION_ORDER)}),
    ]
    truth = truth.assign(_s=order[0], _o=order[1], _a=order[2])
    truth = truth.sort_values(["_s", "_o", "_a", "subgroup", "event_time", "group", "year"], na_position="first")
    return truth[list(TRUTH_COLUMNS)].reset_index(drop=True)


def truth_as_estimate_rows(truth: pd.DataFrame) -> pd.DataFrame:
    """The truths of published estimates, keyed as ``estimates.csv`` rows are.

    Returns ``treatment, outcome, aggregation, event_time, true_effect, n_treated`` for the
    whole-sample ``simple``, ``headline``, ``dynamic``, ``group`` and ``calendar`` rows, with
    ``event_time`` as in ``estimates.csv``: the event time for ``dynamic`` (and the headline's
    per-event-time rows), the cohort for ``group``, the year for ``calendar``, NaN for an
    overall effect.
    """
    published = truth.loc[
        truth["subgroup"].fillna("").eq("")
        & truth["aggregation"].isin(["simple", HEADLINE_AGGREGATION, "dynamic", "group", "calendar"])
    ]
    key = np.select(
        [published["aggregation"].eq("group"), published["aggregation"].eq("calendar")],
        [published["group"].astype("float64"), published["year"].astype("float64")],
        published["event_time"].astype("float64"),
    )
    return published.assign(event_time=key)[
        ["treatment", "outcome", "aggregation", "event_time", "true_effect", "n_treated"]
    ].reset_index(drop=True)


# --- planted truths of the mechanism models ---------------------------------


def _without_later_services(treatment: _Treatment) -> _Treatment:
    """``treatment`` without the effect of every episode of a service the firm added after its first start
    (the world in which no firm adds a second service later; bundles and repeats keep theirs)."""
    start_of_first = np.full(treatment.firm.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(start_of_first, treatment.firm, treatment.start)
    at_first = treatment.start == start_of_first[treatment.firm]
    first_services = set(zip(treatment.firm[at_first], treatment.service[at_first]))
    later = ~at_first & np.array([(f, s) not in first_services for f, s in zip(treatment.firm, treatment.service)])
    return _Treatment(treatment.episodes, treatment.firm, treatment.service, treatment.start,
                      np.where(later, 0.0, treatment.scale), treatment.accounts_from)


def mechanism_truths(
    observed: dict[str, pd.DataFrame],
    untreated: dict[str, pd.DataFrame],
    without_later: dict[str, pd.DataFrame],
    horizon: int = HEADLINE_HORIZON,
    plan: EvaluationPlan | None = None,
) -> pd.DataFrame:
    """Planted truths of the mechanism models, each for the estimand its estimator targets (``TRUTH_COLUMNS``).

    ``observed``, ``untreated`` and ``without_later`` are the clean tables of three worlds with the same firms
    and episodes: as observed, without any support, and without the effect of services added after the first.

    * persistence (``analyses.mechanisms.families.run_persistence``): ``sustained_exporter`` and
      ``spell_survives_k`` (``analyses.mechanisms.outcomes``) of starting with each service, the headline
      (``aggregation`` ``dynamic_balanced``, overall and per event time) as :func:`true_effects` computes it,
      under the family's covariate timing (``persistence_plan``);
    * incremental second service (``run_sequences``): ``treatment`` ``s1>s2``, the headline over the cohorts of
      ``s2`` adders among the ``s1`` starters that the estimator uses (``sequence_sample``, cohort floor, a year
      before), the effect being observed minus ``without_later`` exports (only the added service differs);
    * proportional value effect (``run_value``, ``etwfe_poisson`` with ``simple``): ``outcome``
      ``export_value_eur``, ``aggregation`` ``proportional`` (``true_effects`` has the additive ``simple``):
      ``sum(observed value) / sum(untreated value) - 1`` over
      the treated firm-years from the start on of the service's value sample (``value_sample``: emfx's rows),
      zeros included.
    """
    from analyses.mechanisms.families import persistence_plan, sequence_sample, usable_cohorts, value_sample
    from analyses.mechanisms.outcomes import PERSISTENCE_OUTCOMES, add_persistence_outcomes

    plan = plan or EvaluationPlan()
    panel = add_persistence_outcomes(build_firm_year_panel(**observed).panel)
    counterfactual = add_persistence_outcomes(build_firm_year_panel(**untreated).panel)
    first_only = build_firm_year_panel(**without_later).panel
    effect = panel[list(PERSISTENCE_OUTCOMES)] - counterfactual[list(PERSISTENCE_OUTCOMES)]
    persistence = _service_truths(panel, effect, _first_episode_doses(observed["participation"]),
                                  persistence_plan(plan), horizon)
    frames = [frame.loc[frame["aggregation"].eq(HEADLINE_AGGREGATION) & frame["subgroup"].isna()]
              for frame in persistence if "subgroup" in frame]
    for first in SERVICES:
        for second in (s for s in SERVICES if s != first):
            data = sequence_sample(panel, first, second)
            for outcome in plan.families.sequence_outcomes:
                try:
                    used = usable_cohorts(data.loc[data[outcome].notna()], plan)
                except ValueError:
                    continue
                rows = used.loc[used["cohort"] > 0]
                added = (panel[outcome] - first_only[outcome]).loc[rows.index].to_numpy(dtype="float64")
                every_row = np.ones(len(rows), dtype=bool)
                truth = _Cells.of(rows, added, every_row, used["year"].min()).headline(used["year"].max(), horizon,
                                                                                      per_event_time=True)
                frames.append(truth.assign(treatment=f"{first}>{second}", outcome=outcome))
    for service in SERVICES:
        sample, _ = value_sample(panel, service, plan)
        treated = sample.loc[(sample["cohort"] > 0) & (sample["year"] >= sample["cohort"])]
        ratio = panel.loc[treated.index, "export_value_eur"].sum() / counterfactual.loc[treated.index,
                                                                                        "export_value_eur"].sum()
        frames.append(pd.DataFrame({"treatment": [service], "outcome": ["export_value_eur"], "aggregation": ["proportional"],
                                    "true_effect": [ratio - 1], "n_treated": [treated["firm_id"].nunique()]}))
    truth = pd.concat([frame for frame in frames if len(frame)], ignore_index=True)
    for column in ("event_time", "group", "year"):
        truth[column] = truth[column].astype("Int64") if column in truth else pd.array([pd.NA] * len(truth), "Int64")
    truth["subgroup"] = ""
    return truth.astype({"n_treated": "int64"})[list(TRUTH_COLUMNS)]


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
- `true_effects.csv`: the planted effects of starting with each service (against
  never-served firms) per outcome: ATT(g,t) cells (`attgt`), R's `simple`, `dynamic`,
  `group` and `calendar` aggregations, the `headline` (event-study average over event
  times 0-{HEADLINE_HORIZON} of the cohorts observed at all of them) overall, per event time and per
  subgroup (cluster, size class, exported before support), and the `dose_slope`; computed
  by simulating every firm with and without support and counting only the firms the
  estimator can use. A correct estimator should recover them; a naive comparison of
  participants with non-participants should not (selection on size, exporting, age and
  cluster membership; export trends differ by size and cluster).
- The register is unbalanced: firms are founded and close during the panel, and some
  participants' accounts start only shortly before their programme; some firms were
  supported before the first year; about 30 % of supported firms get a second service.
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
