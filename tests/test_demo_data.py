"""Demo-data generator: determinism, contract v1 conformance, planted selection and truth."""

import filecmp

import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import LANDING_FILES, generate_demo_data, main, write_demo_data
from analyses.contracts.model import is_eu_member
from analyses.panel import PANEL_OUTCOMES, SERVICES, build_firm_year_panel

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
    assert len(data.financials) == N_FIRMS * len(YEARS)  # balanced panel
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
    assert (firms["founded_year"].astype(int) <= YEARS[0]).all()


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


def test_true_effects_file_matches_estimates_vocabulary(landing):
    truth = landing["true_effects"]
    assert list(truth.columns) == ["treatment", "outcome", "aggregation", "event_time", "group",
                                   "true_effect", "n_treated"]
    assert set(truth["treatment"]) == set(SERVICES)
    assert set(truth["outcome"]) == set(PANEL_OUTCOMES)
    assert set(truth["aggregation"]) == {"simple", "dynamic", "group"}
    by = truth.groupby("aggregation")
    assert (by.get_group("simple")[["event_time", "group"]] == "").all().all()
    assert (by.get_group("dynamic")["group"] == "").all() and (by.get_group("dynamic")["event_time"] != "").all()
    assert (by.get_group("group")["event_time"] == "").all() and (by.get_group("group")["group"] != "").all()


def test_selection_on_size_cluster_and_prior_exporting(baseline):
    never = baseline[baseline["first_service"] == "none"]
    assert 0.55 <= len(never) / len(baseline) <= 0.70
    for service in SERVICES:
        joined = baseline[baseline["first_service"] == service]
        cohorts = set(joined["first_service_year"])
        assert min(cohorts) >= 2014 and max(cohorts) <= 2022 and len(cohorts) == 9
        for covariate in ("log_employees_first", "in_cluster", "exporter_first"):
            assert joined[covariate].mean() > never[covariate].mean() + 0.05, (service, covariate)


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
    truth = data.true_effects
    simple = truth[(truth["aggregation"] == "simple") & (truth["outcome"] == "exporter")]
    assert simple["true_effect"].between(0.03, 0.15).all(), simple
    dynamic = truth[(truth["aggregation"] == "dynamic") & (truth["outcome"] == "exporter")]
    assert (dynamic.loc[dynamic["event_time"] < 0, "true_effect"] == 0).all()
    grant = dynamic[dynamic["treatment"] == "grant"].set_index("event_time")["true_effect"]
    assert grant.loc[0:1].min() > 0.05
    assert grant.loc[3:].abs().max() < 0.01
    advisory = dynamic[dynamic["treatment"] == "advisory"].set_index("event_time")["true_effect"]
    assert advisory.loc[3:6].mean() > advisory.loc[0], "advisory effects build up"


def test_truth_counts_the_right_firms(data, baseline):
    truth = data.true_effects
    for service in SERVICES:
        firms = baseline[baseline["first_service"] == service]
        rows = truth[(truth["treatment"] == service) & (truth["outcome"] == "exporter")]
        assert rows.loc[rows["aggregation"] == "simple", "n_treated"].item() == len(firms)
        groups = rows[rows["aggregation"] == "group"].set_index("group")["n_treated"]
        assert groups.to_dict() == firms.groupby("first_service_year").size().to_dict()


def test_naive_comparison_is_biased_upwards(panel, data):
    """Participants out-export non-participants by far more than the programme adds."""
    never = panel[panel["first_service"] == "none"].groupby("year")["exporter"].mean()
    truth = data.true_effects.query("aggregation == 'simple' and outcome == 'exporter'")
    for service in SERVICES:
        post = panel[(panel["first_service"] == service) & (panel["year"] >= panel["first_service_year"])]
        naive = (post["exporter"] - post["year"].map(never)).mean()
        planted = truth.loc[truth["treatment"] == service, "true_effect"].item()
        assert naive > planted + 0.10, (service, naive, planted)


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


@pytest.mark.slow
def test_doubly_robust_callaway_santanna_recovers_the_planted_truth():
    """The reference implementation (csdid, DR, never-treated, baseline covariates) hits
    the truth at 10,000 firms; dropping the covariates moves it away (trends differ by X)."""
    from csdid.att_gt import ATTgt

    from analyses.panel import BASELINE_COVARIATES

    generated = generate_demo_data(n_firms=10_000)
    panel = build_firm_year_panel(generated.firms, generated.financials,
                                  generated.participation, generated.exports).panel
    panel["unit"] = panel["firm_id"].str[1:].astype(int)
    truth = generated.true_effects.query("aggregation == 'simple' and outcome == 'exporter'")
    errors = {}
    for service in SERVICES:
        sample = panel[panel["first_service"].isin([service, "none"])]
        planted = truth.loc[truth["treatment"] == service, "true_effect"].item()
        for label, formula in (("covariates", "~ " + " + ".join(BASELINE_COVARIATES)), ("none", None)):
            fitted = ATTgt(yname="exporter", tname="year", idname="unit", gname=f"first_{service}_year",
                           data=sample, control_group="nevertreated", xformla=formula)
            result = fitted.fit(est_method="dr", bstrap=False).aggte(typec="simple", bstrap=False).atte
            errors[service, label] = (result["overall_att"] - planted) / result["overall_se"]
    for service in SERVICES:
        assert abs(errors[service, "covariates"]) < 3, errors
    assert sum(errors[s, "none"] for s in SERVICES) > sum(errors[s, "covariates"] for s in SERVICES) + 3, errors


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
