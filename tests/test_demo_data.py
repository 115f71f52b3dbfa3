"""Demo-data generator: determinism, contract v1 conformance, the hard paths it plants, and its truths."""

import filecmp
import warnings

import numpy as np
import pandas as pd
import pytest

import analyses.demo_data as demo_data
from analyses.contracts.model import is_eu_member
from analyses.demo_data import (
    HEADLINE_AGGREGATION,
    HEADLINE_HORIZON,
    LANDING_FILES,
    TRUTH_COLUMNS,
    demo_worlds,
    generate_demo_data,
    main,
    true_effects,
    truth_as_estimate_rows,
    write_demo_data,
)
from analyses.evaluation import EvaluationPlan, service_sample
from analyses.panel import EXPORT_OUTCOMES, PANEL_OUTCOMES, SERVICES, build_firm_year_panel

N_FIRMS = 1_500
YEARS = range(2012, 2025)
WRITTEN = (*LANDING_FILES, "true_effects")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return write_demo_data(out, n_firms=N_FIRMS, seed=11)


@pytest.fixture(scope="module")
def landing(written):
    """The written CSVs read back as plain text, as a contract layer first sees them."""
    return {name: pd.read_csv(written[name], dtype=str, keep_default_na=False) for name in WRITTEN}


@pytest.fixture(scope="module")
def data():
    return generate_demo_data(n_firms=N_FIRMS, seed=11)


@pytest.fixture(scope="module")
def panel(data):
    return build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel


@pytest.fixture(scope="module")
def baseline(panel):
    return panel.drop_duplicates("firm_id").set_index("firm_id")


def test_same_seed_gives_byte_identical_files(written, tmp_path):
    again = write_demo_data(tmp_path / "again", n_firms=N_FIRMS, seed=11)
    for name in (*WRITTEN, "readme"):
        assert filecmp.cmp(written[name], again[name], shallow=False), name
    other = write_demo_data(tmp_path / "other", n_firms=N_FIRMS, seed=12)
    assert not filecmp.cmp(written["exports"], other["exports"], shallow=False)


def test_shapes_and_clean_dtypes(data):
    assert len(data.firms) == N_FIRMS
    assert len(data.financials) < 0.9 * N_FIRMS * len(YEARS)  # firms come and go
    expected = {
        "firms": {"firm_id": "object", "nace2": "object", "region": "object",
                  "founded_year": "int64", "in_cluster": "bool"},
        "financials": {"firm_id": "object", "year": "int64", "employees": "int64",
                       "turnover_eur": "float64"},
        "participation": {"firm_id": "object", "programme": "object", "service": "object",
                          "start_date": "datetime64[ns]", "end_date": "datetime64[ns]",
                          "advisory_hours": "float64", "grant_eur": "float64",
                          "network_events": "float64"},
        "exports": {"firm_id": "object", "year": "int64", "destination": "object",
                    "export_value_eur": "float64"},
    }
    for name, dtypes in expected.items():
        table = getattr(data, name)
        assert list(table.columns) == list(dtypes), name
        assert {c: str(t) for c, t in table.dtypes.items()} == dtypes, name


def test_written_files_read_back_to_the_returned_frames(data, written):
    firms = pd.read_csv(written["firms"], dtype={"firm_id": str, "nace2": str, "region": str})
    pd.testing.assert_frame_equal(firms, data.firms)
    financials = pd.read_csv(written["financials"], dtype={"firm_id": str})
    pd.testing.assert_frame_equal(financials, data.financials, check_dtype=False)
    participation = pd.read_csv(written["participation"], dtype={"firm_id": str},
                                parse_dates=["start_date", "end_date"])
    pd.testing.assert_frame_equal(participation, data.participation, check_dtype=False)
    exports = pd.read_csv(written["exports"], dtype={"firm_id": str})
    pd.testing.assert_frame_equal(exports, data.exports)


def test_firms_conform_to_contract(landing):
    firms = landing["firms"]
    assert list(firms.columns) == ["firm_id", "nace2", "region", "founded_year", "in_cluster"]
    assert firms["firm_id"].str.fullmatch(r"F\d{6}").all() and firms["firm_id"].is_unique
    assert firms["nace2"].str.fullmatch(r"\d{2}").all()
    assert (firms["nace2"] == "01").any(), "a leading-zero division keeps contract readers honest"
    assert firms["region"].str.fullmatch(r"DE[0-9A-G][0-9]").all()
    assert set(firms["in_cluster"]) == {"true", "false"}
    assert (firms["founded_year"].astype(int) <= YEARS[-1]).all()


def test_financials_conform_to_contract(landing):
    financials = landing["financials"]
    assert list(financials.columns) == ["firm_id", "year", "employees", "turnover_eur"]
    assert not financials.duplicated(["firm_id", "year"]).any()
    assert financials["employees"].str.fullmatch(r"\d+").all()
    assert (financials["turnover_eur"].astype(float) >= 0).all()
    assert set(financials["year"].astype(int)) == set(YEARS)


def test_participation_conforms_to_contract(landing):
    episodes = landing["participation"]
    assert list(episodes.columns) == ["firm_id", "programme", "service", "start_date", "end_date",
                                      "advisory_hours", "grant_eur", "network_events"]
    assert set(episodes["service"]) == set(SERVICES)
    assert episodes["start_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert episodes["end_date"].str.fullmatch(r"(\d{4}-\d{2}-\d{2})?").all()
    assert (episodes["end_date"] == "").any(), "some episodes are ongoing"
    ended = episodes[episodes["end_date"] != ""]
    assert (pd.to_datetime(ended["end_date"]) > pd.to_datetime(ended["start_date"])).all()
    for service, dose, low, high in (("advisory", "advisory_hours", 10, 120),
                                     ("network", "network_events", 1, 8),
                                     ("grant", "grant_eur", 5_000, 150_000)):
        own = episodes["service"] == service
        assert (episodes.loc[~own, dose] == "").all(), f"{dose} only for {service}"
        values = episodes.loc[own, dose].astype(float)
        assert values.between(low, high).all(), dose
    assert episodes.duplicated("firm_id").any(), "some firms have several episodes"


def test_exports_conform_to_contract(landing):
    exports = landing["exports"]
    assert list(exports.columns) == ["firm_id", "year", "destination", "export_value_eur"]
    destinations = set(exports["destination"])
    assert all(len(d) == 2 and d.isupper() for d in destinations) and "DE" not in destinations
    eu = {d for d in destinations if is_eu_member(d, YEARS[-1])}
    assert len(eu) >= 20 and len(destinations - eu) >= 10
    assert (exports["export_value_eur"].astype(float) > 0).all()
    firm_years = set(zip(landing["financials"]["firm_id"], landing["financials"]["year"]))
    assert set(zip(exports["firm_id"], exports["year"])) <= firm_years
    assert not exports.duplicated(["firm_id", "year", "destination"]).any()


def test_true_effects_file_has_every_estimand_in_the_estimates_vocabulary(landing):
    truth = landing["true_effects"]
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert set(truth["treatment"]) == set(SERVICES)
    assert set(PANEL_OUTCOMES) <= set(truth["outcome"])
    assert set(truth["aggregation"]) == {"simple", HEADLINE_AGGREGATION, "dynamic", "group", "calendar", "attgt",
                                         "dose_slope"}
    filled = truth[["event_time", "group", "year", "subgroup"]] != ""
    keys = filled.groupby(truth["aggregation"]).agg(lambda column: tuple(sorted(set(column))))
    assert keys.loc["simple"].tolist() == [(False,)] * 4
    assert keys.loc["dose_slope"].tolist() == [(False,)] * 4
    assert keys.loc["dynamic"].tolist() == [(True,), (False,), (False,), (False,)]
    assert keys.loc["group"].tolist() == [(False,), (True,), (False,), (False,)]
    assert keys.loc["calendar"].tolist() == [(False,), (False,), (True,), (False,)]
    assert keys.loc["attgt"].tolist() == [(True,), (True,), (True,), (False,)]
    headline = truth[truth["aggregation"] == HEADLINE_AGGREGATION]
    overall = headline[headline["event_time"] == ""]
    assert set(overall["subgroup"]) == {"", "in_cluster=0", "in_cluster=1", "size_class=micro", "size_class=small",
                                        "size_class=medium", "exported_before=0", "exported_before=1"}
    assert set(headline.loc[headline["event_time"] != "", "event_time"].astype(int)) == set(range(HEADLINE_HORIZON + 1))


def test_truths_cover_every_export_outcome_column_the_panel_produces(data, panel):
    produced = [c for c in panel.columns if c in {*PANEL_OUTCOMES, *EXPORT_OUTCOMES}]
    assert list(dict.fromkeys(data.true_effects["outcome"])) == produced


def test_an_outcome_column_added_to_the_panel_gets_its_truths_without_other_changes(monkeypatch):
    """Truths come from differencing whatever outcome columns the panel builder returns."""
    build = demo_data.build_firm_year_panel

    def with_extra_outcome(*args, **kwargs):
        built = build(*args, **kwargs)
        built.panel["exporter_times_three"] = 3 * built.panel["exporter"]
        return built

    monkeypatch.setattr(demo_data, "build_firm_year_panel", with_extra_outcome)
    monkeypatch.setattr(demo_data, "PANEL_OUTCOMES", (*PANEL_OUTCOMES, "exporter_times_three"))
    truth = generate_demo_data(n_firms=600, seed=3).true_effects.set_index(
        ["treatment", "aggregation", "event_time", "group", "year", "subgroup"]
    )
    tripled = truth.loc[truth["outcome"] == "exporter_times_three", "true_effect"]
    single = truth.loc[truth["outcome"] == "exporter", "true_effect"]
    assert len(tripled) == len(single) > 100
    pd.testing.assert_series_equal(tripled, 3 * single.reindex(tripled.index), check_names=False)


def test_selection_on_size_cluster_and_prior_exporting(baseline):
    never = baseline[baseline["first_service"] == "none"]
    assert 0.55 <= len(never) / len(baseline) <= 0.70
    for service in SERVICES:
        joined = baseline[baseline["first_service"] == service]
        cohorts = set(joined["first_service_year"])
        assert set(range(2014, 2023)) <= cohorts and max(cohorts) <= 2022
        for covariate in ("log_employees_first", "in_cluster", "exporter_first"):
            assert joined[covariate].mean() > never[covariate].mean() + 0.03, (service, covariate)


def test_firms_are_founded_and_close_during_the_panel(data):
    founded = data.firms.set_index("firm_id")["founded_year"]
    spans = data.financials.groupby("firm_id")["year"].agg(["min", "max", "size"])
    assert (spans["max"] - spans["min"] + 1 == spans["size"]).all(), "accounts have no gaps"
    entrants = founded[founded > YEARS[0]]
    assert 0.10 <= len(entrants) / len(founded) <= 0.20
    assert (spans.loc[entrants.index, "min"] == entrants).all(), "entrants' accounts start when they are founded"
    closed = spans["max"] < YEARS[-1]
    assert 0.15 <= closed.mean() <= 0.45


def test_support_starts_before_the_panel_and_shortly_after_accounts_begin(baseline, data):
    first_accounts = data.financials.groupby("firm_id")["year"].min()
    supported = baseline[baseline["first_service"] != "none"]
    assert (supported["first_service_year"] < YEARS[0]).mean() > 0.02, "some support started before the panel"
    in_panel = supported[supported["first_service_year"] >= YEARS[0] + 3]
    lead = in_panel["first_service_year"] - first_accounts.reindex(in_panel.index)
    assert lead.isin([1, 2]).mean() > 0.12, "accounts start one or two years before the programme"
    assert (lead == 0).sum() >= 3, "some participants have no accounts year before their programme"


def test_a_third_of_supported_firms_get_a_second_service_some_as_a_same_date_bundle(data):
    episodes = data.participation
    first = episodes.groupby("firm_id")["start_date"].transform("min")
    first_services = episodes.loc[episodes["start_date"] == first].groupby("firm_id")["service"].agg(set)
    later = episodes.loc[episodes["start_date"] > first].groupby("firm_id")["service"].agg(set)
    second = later.reindex(first_services.index).dropna()
    other_service = [bool(services - begun) for services, begun in zip(second, first_services.loc[second.index])]
    share = sum(other_service) / len(first_services)
    assert 0.22 <= share <= 0.38, share
    bundles = first_services.map(len) > 1
    assert 0.03 <= bundles.mean() <= 0.10


def test_second_services_carry_their_own_effects(monkeypatch, data):
    """Without the second services' own effects the late event-time truths are smaller (export values
    respond in every exporting firm-year, so the comparison is not left to a few export starts)."""
    monkeypatch.setattr(demo_data, "SECOND_SERVICE_SCALE", 0.0)
    without = generate_demo_data(n_firms=N_FIRMS, seed=11).true_effects

    def late(truth):
        rows = truth.query("aggregation == 'dynamic' and outcome == 'log_export_value' and event_time >= 2")
        return rows.groupby("treatment")["true_effect"].mean()

    assert (late(data.true_effects) - late(without)).min() > 0.005


def test_selection_is_not_a_logit_in_the_estimators_covariates(baseline):
    """Size thresholds and exporter interactions add to a logit in the baseline covariates."""
    import statsmodels.api as sm
    from scipy import stats

    from analyses.panel import BASELINE_COVARIATES

    firms = generate_demo_data(n_firms=4_000, seed=11)
    firm_rows = build_firm_year_panel(firms.firms, firms.financials, firms.participation, firms.exports).panel
    first = firm_rows.drop_duplicates("firm_id")
    first = first[first["first_service_year"] >= YEARS[0] + 2]._append(first[first["first_service"] == "none"])
    treated = (first["first_service"] != "none").astype(float)
    linear = sm.add_constant(first[list(BASELINE_COVARIATES)].astype(float))
    employees, exporter = first["employees"], first["exporter_first"]
    steps = linear.assign(ten=employees >= 10, fifty=employees >= 50, exporter_cluster=exporter * first["in_cluster"],
                          exporter_fifty=exporter * (employees >= 50)).astype(float)
    fits = [sm.GLM(treated, design, family=sm.families.Binomial()).fit() for design in (linear, steps)]
    statistic = 2 * (fits[1].llf - fits[0].llf)
    assert stats.chi2.sf(statistic, df=4) < 0.01, statistic


def test_about_half_of_new_exporters_stop_within_a_year(panel):
    status = panel.pivot(index="firm_id", columns="year", values="exporter").to_numpy()
    new = (status[:, 1:-1] == 1) & (status[:, :-2] == 0)
    stopped = new & (status[:, 2:] == 0)
    assert new.sum() > 300
    assert 0.40 <= stopped.sum() / new.sum() <= 0.60


def test_export_values_are_heavy_tailed(panel):
    per_firm = panel.groupby("firm_id")["export_value_eur"].sum().sort_values(ascending=False)
    top_percent = per_firm.iloc[: len(per_firm) // 100].sum() / per_firm.sum()
    assert top_percent > 0.15


def test_planted_effects_have_literature_size_and_shape(data):
    truth = data.true_effects.query("subgroup == ''")
    headline = truth.query("aggregation == @HEADLINE_AGGREGATION and outcome == 'exporter' and event_time.isna()")
    assert headline["true_effect"].between(0.03, 0.20).all(), headline
    dynamic = truth[(truth["aggregation"] == "dynamic") & (truth["outcome"] == "exporter")]
    assert (dynamic.loc[dynamic["event_time"] < 0, "true_effect"] == 0).all()
    grant = dynamic[dynamic["treatment"] == "grant"].set_index("event_time")["true_effect"]
    assert grant.loc[0:2].min() > 0.07
    advisory = dynamic[dynamic["treatment"] == "advisory"].set_index("event_time")["true_effect"]
    assert advisory.loc[3:6].mean() > advisory.loc[0], "advisory effects build up"
    late_to_early = {name: path.loc[6:8].mean() / path.loc[0:2].mean() for name, path in
                     (("grant", grant), ("advisory", advisory))}
    assert late_to_early["grant"] < 0.5 * late_to_early["advisory"], late_to_early  # grants' own effect fades


def test_network_does_more_outside_clusters_and_effects_rise_with_the_first_dose(data):
    truth = data.true_effects.query("outcome == 'exporter'")
    overall = truth.query("aggregation == @HEADLINE_AGGREGATION and event_time.isna()").set_index(
        ["treatment", "subgroup"])["true_effect"]
    assert overall["network", "in_cluster=0"] > 1.5 * overall["network", "in_cluster=1"]
    assert overall["advisory", "size_class=micro"] > overall["advisory", "size_class=medium"]
    slopes = truth.query("aggregation == 'dose_slope'").set_index("treatment")["true_effect"]
    assert (slopes > 0).all(), slopes


def test_truth_counts_the_firms_the_estimator_uses(data, panel):
    """Cohort sizes mirror analyses.evaluation.service_sample: base period, not already treated, floor."""
    truth = data.true_effects.query("outcome == 'exporter' and subgroup == ''")
    for service in SERVICES:
        sample, cohorts = service_sample(panel, service, EvaluationPlan())
        used = cohorts.loc[cohorts["used"]].set_index("cohort")["n_firms"]
        rows = truth[truth["treatment"] == service]
        groups = rows[rows["aggregation"] == "group"].set_index("group")["n_treated"]
        assert groups.to_dict() == used.to_dict()
        assert rows.loc[rows["aggregation"] == "simple", "n_treated"].item() == used.sum()
        assert (cohorts["n_already_treated"] + cohorts["n_without_baseline"]).sum() > 0
        balanced = used[used.index <= YEARS[-1] - HEADLINE_HORIZON].sum()
        headline = rows.query("aggregation == @HEADLINE_AGGREGATION and event_time.isna()")
        assert headline["n_treated"].item() == balanced


def test_aggregated_truths_weight_the_cells_as_aggte_does(data):
    """simple, dynamic, group, calendar and the headline recomputed from the ATT(g,t) cells and cohort sizes."""
    truth = data.true_effects.query("subgroup == ''")
    for (service, outcome), rows in truth.groupby(["treatment", "outcome"]):
        cells = rows[rows["aggregation"] == "attgt"].astype({"group": int, "year": int, "event_time": int})
        size = rows[rows["aggregation"] == "group"].set_index("group")["n_treated"]
        cells = cells.assign(weight=cells["group"].map(size).astype(float))
        post = cells[cells["event_time"] >= 0]

        def weighted(part):
            return (part["true_effect"] * part["weight"]).sum() / part["weight"].sum()

        by = rows.set_index(["aggregation", "event_time", "group", "year"])["true_effect"]
        assert by["simple"].item() == pytest.approx(weighted(post))
        dynamic = by["dynamic"].droplevel(["group", "year"])
        for e, part in cells.groupby("event_time"):
            assert dynamic[e] == pytest.approx(weighted(part)), (service, outcome, e)
        group = by["group"].droplevel(["event_time", "year"])
        for g, part in post.groupby("group"):
            assert group[g] == pytest.approx(part["true_effect"].mean())
        calendar = by["calendar"].droplevel(["event_time", "group"])
        for t, part in post.groupby("year"):
            assert calendar[t] == pytest.approx(weighted(part))
        balanced = post[(post["group"] <= YEARS[-1] - HEADLINE_HORIZON) & (post["event_time"] <= HEADLINE_HORIZON)]
        per_e = balanced.groupby("event_time").apply(weighted)
        headline = rows[rows["aggregation"] == HEADLINE_AGGREGATION]
        overall = headline.loc[headline["event_time"].isna(), "true_effect"].item()
        assert overall == pytest.approx(per_e.mean()), (service, outcome)
        assert headline.loc[headline["event_time"].notna(), "true_effect"].to_numpy() == pytest.approx(per_e.to_numpy())


def test_naive_comparison_is_biased_upwards(panel, data):
    """Participants out-export non-participants by far more than the programme adds."""
    never = panel[panel["first_service"] == "none"].groupby("year")["exporter"].mean()
    truth = data.true_effects.query("aggregation == 'simple' and outcome == 'exporter'")
    for service in SERVICES:
        post = panel[(panel["first_service"] == service) & (panel["year"] >= panel["first_service_year"])]
        naive = (post["exporter"] - post["year"].map(never)).mean()
        planted = truth.loc[truth["treatment"] == service, "true_effect"].item()
        assert naive > planted + 0.05, (service, naive, planted)


def test_messy_shipments_are_summed_to_the_same_panel(data, panel):
    messy = generate_demo_data(n_firms=N_FIRMS, seed=11, messy=True)
    assert len(messy.exports) > len(data.exports)
    assert messy.exports.duplicated(["firm_id", "year", "destination"]).any()
    rebuilt = build_firm_year_panel(messy.firms, messy.financials, messy.participation, messy.exports).panel
    pd.testing.assert_frame_equal(rebuilt, panel, check_exact=False, rtol=1e-9)


def test_cli_writes_all_files(tmp_path, capsys):
    main(["--firms", "200", "--out", str(tmp_path / "cli"), "--seed", "3"])
    written = {p.name for p in (tmp_path / "cli").iterdir()}
    assert written == {f"{name}.csv" for name in WRITTEN} | {"README.md"}
    assert "wrote 6 files" in capsys.readouterr().out


def test_too_few_firms_is_refused():
    with pytest.raises(ValueError, match="n_firms must be at least 50"):
        generate_demo_data(n_firms=10)


def test_generation_is_vectorised_enough():
    import time

    started = time.perf_counter()
    generated = generate_demo_data(n_firms=3_000, seed=5)
    assert time.perf_counter() - started < 10.0
    assert np.isfinite(generated.true_effects["true_effect"]).all()


def test_the_truths_are_what_the_estimator_adds_up_from_the_planted_effects():
    """Issue 9: advisory x exporter ``simple`` ran 2.1 SE above its truth at 10,000 firms. The truths are the
    estimand the estimator targets (closing firms, late accounts and all): outcome-regression CS-DiD is
    linear in the supported firms' outcomes, so its estimate on the observed world minus its estimate on the
    untreated world (same firms, same draws) is exactly the planted truth, for every published aggregation.
    What is left between an estimate and its truth is the estimator's error on the untreated outcomes."""
    from analyses.evaluation import run_evaluation

    plan = EvaluationPlan(bootstrap_iterations=0, est_method="reg", services=("advisory", "grant"),
                          outcomes=("exporter", "new_destination"))
    worlds = demo_worlds(n_firms=N_FIRMS, seed=11)
    keys = ["treatment", "outcome", "aggregation", "event_time"]
    estimates = []
    for world in ("observed", "untreated"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_evaluation(build_firm_year_panel(**worlds[world]).panel, plan)
        estimates.append(result.estimates.query("estimator == 'cs_did'")[keys + ["estimate"]])
    added = estimates[0].merge(estimates[1], on=keys, suffixes=("", "_untreated"), validate="one_to_one")
    truth = truth_as_estimate_rows(true_effects(worlds["observed"], worlds["untreated"], plan=plan))
    merged = added.merge(truth, on=keys, validate="one_to_one")
    assert set(merged["aggregation"]) == {"simple", HEADLINE_AGGREGATION, "dynamic", "group", "calendar"}
    assert len(merged) > 100
    np.testing.assert_allclose(merged["estimate"] - merged["estimate_untreated"], merged["true_effect"],
                               rtol=0, atol=1e-9)


@pytest.mark.slow
def test_doubly_robust_callaway_santanna_recovers_the_planted_truth():
    """The reference implementation (csdid, DR, never-treated, first-year covariates), run on the
    firms the pipeline estimates on, hits the truth at 10,000 firms; dropping the covariates moves
    it further away, because selection into support runs through size and prior exporting.
    (First-year snapshots: csdid, as R, reads time-varying covariates row by row on an unbalanced panel.)"""
    from csdid.att_gt import ATTgt

    plan = EvaluationPlan(covariate_timing="first_year")
    generated = generate_demo_data(n_firms=10_000, plan=plan)
    panel = build_firm_year_panel(generated.firms, generated.financials,
                                  generated.participation, generated.exports).panel
    truth = generated.true_effects.query("aggregation == 'simple' and outcome == 'exporter'")
    truth = truth[truth["subgroup"].fillna("").eq("")]
    errors = {}
    for service in SERVICES:
        sample, _ = service_sample(panel, service, plan)
        sample = sample.dropna(subset=["exporter"])
        planted = truth.loc[truth["treatment"] == service, "true_effect"].item()
        for label, formula in (("covariates", plan.xformla), ("none", None)):
            fitted = ATTgt(yname="exporter", tname="year", idname="unit", gname="cohort",
                           data=sample, control_group="nevertreated", xformla=formula,
                           allow_unbalanced_panel=True)
            result = fitted.fit(est_method="dr", bstrap=False).aggte(typec="simple", bstrap=False).atte
            errors[service, label] = (result["overall_att"] - planted) / result["overall_se"]
    for service in SERVICES:
        assert abs(errors[service, "covariates"]) < 3, errors
    assert sum(abs(errors[s, "none"]) for s in SERVICES) > sum(abs(errors[s, "covariates"]) for s in SERVICES), errors


@pytest.mark.slow
def test_the_evaluation_recovers_the_planted_truths_at_10000_firms():
    """Issue 9: with the default plan (time-varying covariates read in each comparison's base period) every
    headline interval of the 10,000-firm demo contains its planted truth, and the post-programme event times'
    z = (estimate - truth) / SE are centred on 0 with spread 1 (analytic standard errors; the pipeline's
    bootstrap ones estimate the same). R's ``simple`` average, no longer the headline, is held to |z| < 2.5:
    advisory x exporter's is 2.1 at this seed, the estimator's error on the untreated outcomes (the same z on
    the world without support; across seeds it averages 0). Measured: README, "Covariates"."""
    from analyses.evaluation import run_evaluation

    plan = EvaluationPlan(bootstrap_iterations=0)
    generated = generate_demo_data(n_firms=10_000, plan=plan)
    panel = build_firm_year_panel(generated.firms, generated.financials,
                                  generated.participation, generated.exports).panel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimates = run_evaluation(panel, plan).estimates.query("estimator == 'cs_did'")
    merged = estimates.merge(truth_as_estimate_rows(generated.true_effects), validate="one_to_one",
                             on=["treatment", "outcome", "aggregation", "event_time"])
    merged["z"] = (merged["estimate"] - merged["true_effect"]) / merged["std_error"]
    overall = merged[merged["event_time"].isna()].set_index("aggregation")
    headline, simple = overall.loc[HEADLINE_AGGREGATION], overall.loc["simple"]
    assert len(headline) == len(simple) == len(SERVICES) * len(plan.outcomes)
    assert (headline["z"].abs() < 1.96).all(), headline[["treatment", "outcome", "z"]]
    assert (simple["z"].abs() < 2.5).all(), simple[["treatment", "outcome", "z"]]
    post = merged.query("aggregation == 'dynamic' and event_time >= 0")["z"]
    assert len(post) >= 100
    assert abs(post.mean()) < 0.4 and 0.8 < post.std() < 1.2 and (post.abs() <= 1.96).mean() >= 0.9, post.describe()


def test_written_files_pass_the_data_contracts_unchanged(tmp_path):
    """The project's own contract engine quarantines nothing and types back to DemoData."""
    from analyses.contracts import SOURCES, find_source_file, load_contracts, read_source, validate_sources

    generated = generate_demo_data(n_firms=300, seed=4, messy=True)
    write_demo_data(tmp_path, n_firms=300, seed=4, messy=True)
    contracts = load_contracts()
    raws = {source: read_source(find_source_file(tmp_path, source), contracts[source]) for source in SOURCES}
    results = validate_sources(raws, contracts)
    for source in LANDING_FILES:
        assert results[source].rows_quarantined == 0, results[source].rule_counts
        expected = getattr(generated, source)
        clean = results[source].clean[list(expected.columns)].reset_index(drop=True)
        pd.testing.assert_frame_equal(clean, expected, check_dtype=False)
