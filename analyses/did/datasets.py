"""Example data for trying the estimator: R ``did``'s ``mpdta`` (see ``data/README.md``)."""
from __future__ import annotations

from importlib import resources

import pandas as pd


def load_mpdta() -> pd.DataFrame:
    """The R ``did`` package's example panel ``mpdta``, as in R.

    2500 rows, one per county and year (500 counties x 2003-2007, balanced): ``year``,
    ``countyreal`` (county id), ``lpop`` (log population, time-invariant), ``lemp`` (log teen
    employment), ``first.treat`` (year of the first minimum-wage increase, 0 = not treated in the
    sample) and ``treat``. Source: R ``did`` (GPL-2), shipped unchanged as package data
    (``analyses/did/data/mpdta.csv``); the R reference tests use the same bytes.
    """
    with resources.files("analyses.did").joinpath("data", "mpdta.csv").open("rb") as handle:
        return pd.read_csv(handle)
