"""Mechanism families on the demo data, their outcomes and plan section, and their Dagster assets."""
import numpy as np
import pandas as pd
import pytest

from analyses.evaluation import EvaluationPlan
from analyses.mechanisms.families import MECHANISM_COLUMNS, RUNNERS, run_bundles
from analyses.mechanisms.outcomes import add_persistence_outcomes, bundle_starts
from analyses.mechanisms.plan import FAMILY_NAMES, FamiliesPlan


def test_persistence_outcomes_follow_their_definitions():
    exporter = [0, 1, 1, 1, 0, 1, np.nan, 1]
    panel = pd.DataFrame({"firm_id": "a", "year": range(2010, 2018), "exporter": exporter})
    out = add_persistence_outcomes(panel).set_index("year")
    np.testing.assert_array_equal(out.sustained_exporter.to_numpy(),
                                  [np.nan, np.nan, 0, 1, 0, 0, np.nan, np.nan])
    # spell started 2011 (0 in 2010): survives 1 year in 2012, 2 years in 2013
    assert out.loc[2012, "spell_survives_1"] == 1 and out.loc[2013, "spell_survives_2"] == 1
    assert out.loc[2013, "spell_survives_1"] == 0  # the 2012 exports are not a new spell
    assert out.loc[2014, "spell_survives_3"] == 0  # stopped in 2014
    assert np.isnan(out.loc[2017, "spell_survives_1"])  # 2016 unknown
    gap = panel.drop(index=2)  # 2012 not a panel year: nothing reaching over it is known
    assert np.isnan(add_persistence_outcomes(gap).set_index("year").loc[2013, "sustained_exporter"])


def test_bundles_are_two_services_within_the_window():
    participation = pd.DataFrame({
        "firm_id": ["a", "a", "b", "b", "c", "c"],
        "service": ["network", "advisory", "grant", "advisory", "grant", "grant"],
        "start_date": pd.to_datetime(["2016-03-01", "2017-02-28", "2016-01-01", "2017-06-01", "2016-01-01",
                                      "2016-05-01"])})
    bundles = bundle_starts(participation, window_months=12).set_index("firm_id")
    assert bundles.loc["a", "bundle"] == "advisory+network" and bundles.loc["a", "bundle_year"] == 2016
    assert set(bundles.index) == {"a"}  # b: 17 months apart; c: the same service twice


def test_families_plan_is_validated():
    with pytest.raises(ValueError, match="unknown families key"):
        EvaluationPlan(families={"dose_outcome": ["exporter"]})
    with pytest.raises(ValueError, match="families.run names unknown families"):
        EvaluationPlan(families={"run": ["dose", "magic"]})
    plan = EvaluationPlan(families={"run": ["value"], "subgroups": ["region"]})
    assert plan.families == FamiliesPlan(run=("value",), subgroups=("region",))
    assert plan.to_dict()["families"]["run"] == ["value"]


def test_families_plan_reads_from_yaml(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("families:\n  run: [dose]\n  dose_degree: 1\n", encoding="utf-8")
    assert EvaluationPlan.from_yaml(path).families.dose_degree == 1


@pytest.fixture(scope="module")
def demo():
    from analyses.demo_data import generate_demo_data
    from analyses.panel import build_firm_year_panel

    data = generate_demo_data(n_firms=2_000, seed=7)
    panel = build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel
    return data, panel


FAST = EvaluationPlan(bootstrap_iterations=99)


@pytest.mark.parametrize("family", sorted(RUNNERS))
def test_every_family_returns_rows_in_the_estimates_vocabulary(demo, family):
    data, panel = demo
    result = RUNNERS[family](panel, FAST)
    rows = result.rows
    assert tuple(rows.columns) == MECHANISM_COLUMNS
    assert len(result.specifications) > 0 and result.seconds > 0
    assert len(rows) or len(result.not_estimable)
    assert (rows.family == family).all()
    assert rows.subgroup.notna().all()
    summary = rows.aggregation.isin(["dynamic_balanced", "simple", "dose_level", "dose_slope"]) \
        & rows.event_time.isna() & rows.dose.isna()
    assert rows.loc[summary, "p_value_adjusted"].notna().all()
    # an adjusted p-value is never below its unadjusted one
    assert (rows.loc[summary, "p_value_adjusted"] >= rows.loc[summary, "p_value"] - 0.02).all()
    assert result.not_estimable.reason.ne("").all()


def test_bundles_family_on_demo(demo):
    data, panel = demo
    result = run_bundles(panel, data.participation, FAST)
    assert tuple(result.rows.columns) == MECHANISM_COLUMNS
    assert result.rows.treatment.str.contains(r"\+").all()
    assert len(result.specifications) == 2 * bundle_starts(data.participation).bundle.nunique()


def test_value_family_reports_margins_separately_and_never_log1p(demo):
    _, panel = demo
    rows = RUNNERS["value"](panel, FAST).rows
    assert set(rows.outcome) == {"export_value_eur", "exporter", "log_export_value_if_exporting"}
    assert set(rows.loc[rows.outcome == "export_value_eur", "estimator"]) == {"etwfe_poisson"}
    assert "log_export_value" not in set(rows.outcome)
    poisson = rows.loc[(rows.estimator == "etwfe_poisson") & (rows.aggregation == "simple")]
    assert (poisson.ci_lower > -1).all()  # a proportional effect's interval stays above -100 %


def test_mechanism_assets_materialise_with_metadata(materialised_pipeline):
    result, _ = materialised_pipeline
    for family in FAMILY_NAMES:
        materialisation = result.asset_materializations_for_node(f"mechanism_{family}")[0]
        metadata = materialisation.metadata
        assert metadata["specifications_run"].value > 0, family
        assert metadata["seconds"].value >= 0
        assert "not_estimable" in metadata and "rows" in metadata
