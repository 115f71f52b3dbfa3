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

Bootstrap multipliers are Rademacher, as in R ``did``'s ``mboot``.
"""
from analyses.did.aggte import AggteResult, aggte
from analyses.did.attgt import AttGtResult, att_gt

__all__ = ["att_gt", "aggte", "AttGtResult", "AggteResult"]
