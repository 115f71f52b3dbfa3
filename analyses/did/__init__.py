"""Staggered difference-in-differences (Callaway & Sant'Anna 2021), reproducing R ``did`` 2.5.

``att_gt`` estimates every group-time ATT(g,t) with the doubly robust (``dr``), inverse
probability weighting (``ipw``) or outcome regression (``reg``) 2x2 estimators of DRDID
and keeps the influence functions; ``aggte`` aggregates them (simple, dynamic/event
study, group, calendar) with analytic or multiplier-bootstrap inference.

Documented behaviour on awkward data (R's choices unless stated):

* never-treated units may be coded ``gname == 0`` or NaN; cohorts treated after the
  last period count as never treated;
* cohorts treated in the first period are dropped with a warning (``result.notes``,
  ``result.dropped_first_period_units``);
* no never-treated units with ``control_group="nevertreated"``: the last cohort is used
  as the comparison group and periods from its treatment date on are dropped (warning);
* unbalanced panels raise ``ValueError`` unless ``allow_unbalanced_panel=True`` (then
  R's repeated-cross-section estimators with unit-level influence functions are used);
* a covariate constant within a cell is dropped for that cell (it is collinear with the
  intercept, so the estimate is unchanged) with a warning;
* a cell whose propensity score separates treated and comparison units (max score >=
  0.999), or whose regression design is singular, is NaN with a warning and is listed in
  ``result.failed_cells``; ``aggte`` then raises unless ``na_rm=True``;
* a constant outcome (e.g. all zeros) raises ``ValueError``.

Bootstrap multipliers are Rademacher, as in R ``did``'s ``mboot``. ``load_mpdta()`` returns R
``did``'s example data ``mpdta`` (GPL-2, shipped as package data) to try the estimator on.

Checked to match R ``did`` 2.5 where earlier ports or versions differed:

* standard errors ``<= sqrt(machine eps) * 10`` are NaN, in ``att_gt`` and in ``aggte``;
* a NaN cell is left out of the pre-test and the remaining pre-treatment cells are
  tested (R's filter on NA standard errors does the same);
* with ``clustervars`` the bootstrap draws one multiplier per cluster and applies it to
  the cluster SUM of the influence function, SE ``= IQR-sigma * sqrt(clusters) / n``
  (R >= 2.3.1.906 and csdid; older R used cluster means, identical only for equal-sized
  clusters); without the bootstrap the analytic SE uses the same cluster sums; the
  pre-test is omitted under a clustered bootstrap and uses the clustered covariance
  without one.

Deliberate differences from R ``did`` 2.5:

* anticipation ``a > 0``: cells with ``g - a <= t < g`` are differenced from period
  ``g - a - 1``, the last one free of anticipation, like the post-treatment cells; R moves
  to that base only from ``t >= g`` and, with ``base_period="varying"``, differences these
  cells from ``t - 1``, which reports the change in anticipation rather than its size.
  Only those cells and the event times ``-a .. -2`` of the dynamic aggregation differ,
  and only for ``a >= 2`` with a varying base period (as csdid);
* the pre-test of parallel trends uses the cells ``t < g - a``; R uses ``t < g``, so it
  also tests for zero anticipation, which ``anticipation=a`` has just allowed (no
  estimate changes; as csdid);
* ``aggte`` bootstraps once per aggregation: one set of draws for all rows and the
  overall effect gives the standard errors and the sup-t band.  R draws afresh for each
  row's standard error, for the band and for the overall effect; the draws have the same
  distribution, so results agree up to bootstrap noise (no port reproduces R's random
  numbers), the band is computed from the draws behind the reported standard errors,
  and it costs one bootstrap instead of ``rows + 2`` (csdid follows R here);
* a bootstrap column counts as degenerate when all its draws are zero (csdid); R also
  discards columns whose summed squared draws are ``<= sqrt(eps) * 10``, a rule in the
  outcome's units that only bites for standard errors below about ``1.2e-5 / sqrt(n)``
  with 1000 draws.
"""
from analyses.did.aggte import AggteResult, aggte
from analyses.did.attgt import AttGtResult, att_gt
from analyses.did.datasets import load_mpdta

__all__ = ["att_gt", "aggte", "AttGtResult", "AggteResult", "load_mpdta"]
