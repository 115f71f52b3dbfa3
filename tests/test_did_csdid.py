"""analyses.did against the independent Python port ``csdid`` on random panels with covariates."""
import contextlib
import io
import warnings

import numpy as np
import pytest

from analyses.did import aggte, att_gt
from analyses.did.simulate import simulate_staggered_panel

csdid_att_gt = pytest.importorskip("csdid.att_gt", reason="csdid (test-only dependency) is not installed")

CASES = [  # (missing_share, control_group, est_method, base_period[, weights and anticipation])
    (0.0, "nevertreated", "dr", "varying"),
    (0.0, "nevertreated", "dr", "universal", {"weightsname": "w", "anticipation": 1}),
    (0.0, "notyettreated", "ipw", "varying", {"weightsname": "w"}),
    (0.0, "notyettreated", "ipw", "universal"),
    (0.0, "notyettreated", "reg", "varying"),
    (0.1, "nevertreated", "dr", "varying"),
    (0.1, "notyettreated", "dr", "universal"),
    (0.1, "nevertreated", "ipw", "varying"),
    (0.1, "notyettreated", "reg", "varying"),
]


def _ids(case):
    missing, control, method, base, *extra = case
    return "-".join([("unbalanced" if missing else "balanced"), control, method, base, *map(str, extra)])


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_identical_to_csdid(case):
    missing, control_group, est_method, base_period, *extra = case
    options = extra[0] if extra else {}
    data = simulate_staggered_panel(250, 6, [3, 4, 5], selection_on_x=0.5, covariate_trend=0.2,
                                    missing_share=missing, seed=11)
    data["w"] = 0.5 + (data.unit % 5) / 4  # sampling weights, constant within firm
    ours = att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x1 + C(x2)", control_group=control_group,
                  est_method=est_method, base_period=base_period, bstrap=False, cband=False,
                  allow_unbalanced_panel=bool(missing), **options)
    assert ours.panel.balanced == (missing == 0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        theirs = csdid_att_gt.ATTgt(yname="y", gname="first_treat", idname="unit", tname="period",
                                    xformla="y ~ x1 + C(x2)", data=data, control_group=control_group,
                                    allow_unbalanced_panel=bool(missing), weights_name=options.get("weightsname"),
                                    anticipation=options.get("anticipation", 0))
        theirs.fit(est_method=est_method, base_period=base_period, bstrap=False)
    np.testing.assert_array_equal(ours.group, np.asarray(theirs.results["group"], float))
    np.testing.assert_array_equal(ours.time, np.asarray(theirs.results["year"], float))
    np.testing.assert_allclose(ours.att, np.asarray(theirs.results["att"], float), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.se, np.asarray(theirs.results["se"], float), rtol=1e-9)
    assert ours.W == pytest.approx(theirs.MP["W"], rel=1e-9)
    for agg_type in ["simple", "group", "dynamic", "calendar"]:
        agg = aggte(ours, agg_type, cband=False)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            reference = theirs.aggte(typec=agg_type, cband=False).atte
        assert agg.overall_att == pytest.approx(reference["overall_att"], abs=1e-10)
        assert agg.overall_se == pytest.approx(reference["overall_se"], rel=1e-9)
        if agg.table is not None:
            np.testing.assert_array_equal(agg.table.iloc[:, 0], np.asarray(reference["egt"]))
            np.testing.assert_allclose(agg.table.att, np.asarray(reference["att_egt"], float), atol=1e-10)
            np.testing.assert_allclose(agg.table.se, np.asarray(reference["se_egt"], float).ravel(), rtol=1e-9)
