"""Staggered difference-in-differences (Callaway & Sant'Anna 2021), reproducing R ``did`` 2.5.

``att_gt`` estimates every group-time ATT(g,t) with the doubly robust (``dr``), inverse
probability weighting (``ipw``) or outcome regression (``reg``) 2x2 estimators of DRDID
and keeps the influence functions; ``aggte`` aggregates them (simple, dynamic/event
study, group, calendar) with analytic or multiplier-bootstrap inference.

Documented behaviour on awkward data (R's choices unless stated):

* never-treated units may be coded ``gname == 0``, NaN or +inf; cohorts treated after the
  last period count as never treated; negative codes (e.g. a ``-1`` sentinel) and, when the
  periods are whole numbers, fractional codes raise ``ValueError`` naming the column, the
  values and the number of units (R ``did`` 2.5.1 stops on negative codes; the same check
  guards ``analyses.twfe``);
* rows whose outcome, weight, cluster or covariates *as evaluated by the formula* are
  missing or not finite (``np.log(0)``, an infinite outcome) are dropped with one warning
  naming each term or column and its rows and units (R 2.5.1's ``complete_finite_cases``;
  TWFE does the same); on a balanced panel without ``allow_unbalanced_panel`` a partly
  dropped unit then raises the unbalanced-panel error, where R would drop the unit;
* cohorts treated in the first period are dropped with a warning (``result.notes``,
  ``result.dropped_first_period_units``);
* no never-treated units with ``control_group="nevertreated"``: the last cohort is used
  as the comparison group and periods from its treatment date on are dropped (warning);
* unbalanced panels raise ``ValueError`` unless ``allow_unbalanced_panel=True`` (then
  R's repeated-cross-section estimators with unit-level influence functions are used);
* a covariate constant within a cell is dropped for that cell (it is collinear with the
  intercept, so the estimate is unchanged) with a warning;
* the propensity logit is fitted as R's ``glm``: IRLS from glm's starting values, stopping
  when ``|dev - dev_old| / (|dev| + 0.1) < 1e-8`` or after 25 iterations, R's clamped link.
  Under near-separation (comparison units that the covariates set apart from the treated)
  the MLE does not exist; glm's stopping point gives those units scores of numerically 0,
  hence no weight, and a finite estimate equal to the limit (cross-checked against csdid
  and a hand computation); a warning lists the cells;
* a cell whose propensity score separates the treated from the comparison units (max score
  >= 0.999), whose covariates are collinear, or whose regression design is singular, is NaN
  with a warning and is listed in ``result.failed_cells`` / ``result.failed_table``
  (``group, time, event_time, reason``);
* ``aggte`` options apply as in R: ``max_e`` to simple, group and dynamic, ``min_e`` and
  ``balance_e`` to dynamic only; an option given where it has no effect (e.g. ``max_e`` for
  calendar, ``min_e`` for simple) is named in a warning and not recorded on the result;
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

* ``aggte`` aggregates over the estimable cells by default (``na_rm=True``; R's default
  ``na.rm = FALSE`` stops): NaN cells are left out, weights renormalised over the rest as
  R's ``na.rm = TRUE`` does (cohort shares within an event time or period; a cohort's own
  post-treatment cells for ``group``; cohorts without any estimable post-treatment cell
  drop out of the group weights), the influence functions and the bootstrap use the same
  reduced set, and the result lists what was left out (``dropped_cells``:
  ``group, time, event_time, reason``; ``dropped_cohorts``: ``group, n_units, reason``)
  with a warning, so one weak cohort no longer sinks the whole aggregate;
  ``na_rm=False`` raises as R does;
* cells whose comparison units have propensity scores below ``1e-6`` are named in a
  warning (R's glm warns only below ``10 * eps`` and DRDID silences it);
* unbalanced panels (``allow_unbalanced_panel=True``) with covariates that vary within a
  unit: every unit of a cell has its covariates as observed in the cell's earlier period
  (the base period of a post-treatment cell), as on a balanced panel; R's repeated-cross-
  section path reads each row's own, so a covariate that responds to treatment (prior
  exporting) carries post-treatment values into the cell and biases it. A unit not
  observed in that period leaves the cell (its later row would be post-treatment for a
  treated unit, another year's measurement for a comparison unit), counted in
  ``result.notes``. With covariates constant within each unit (or none) the cells keep
  R's rows, so R and csdid are reproduced there;

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
