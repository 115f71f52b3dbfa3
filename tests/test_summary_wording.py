"""The executive-summary wording follows the sign, significance and outcome type of each estimate."""
import numpy as np
import pandas as pd
import pytest

from analyses.reporting.summary import (
    Intervals, comparison_sentence, effect_sentence, format_number, service_paragraph, summary_paragraphs,
)
from tests.report_fixtures import make_diagnostics, make_estimates

DIRECTIONAL_WORDS = ("more likely", "less likely", "more markets", "fewer markets", "% higher", "% lower")


def test_significant_binary_increase_matches_the_issue_example():
    sentence = effect_sentence("advisory", "exporter", 0.041, 0.018, 0.064, horizon=2)
    assert sentence == ("Firms that started with advisory support were 4.1 percentage points (95 % CI 1.8 to 6.4) "
                        "more likely to export two years after starting, compared with similar firms that "
                        "received no support.")


def test_significant_decrease_is_worded_as_less_likely_with_a_mirrored_interval():
    sentence = effect_sentence("grant", "exporter", -0.025, -0.045, -0.005)
    assert "2.5 percentage points (95 % CI 0.5 to 4.5) less likely to export" in sentence
    assert "more likely" not in sentence


def test_interval_including_zero_never_claims_an_effect_and_quotes_the_mde():
    sentence = effect_sentence("network", "exporter", 0.008, -0.016, 0.032, mde=0.034)
    assert "no statistically detectable change in the probability of exporting" in sentence
    assert "about 3.4 percentage points or larger" in sentence
    assert not any(word in sentence for word in DIRECTIONAL_WORDS)


def test_interval_touching_zero_counts_as_including_zero():
    sentence = effect_sentence("advisory", "enters_new_market", 0.02, 0.0, 0.04)
    assert "no statistically detectable change" in sentence


def test_count_outcome_is_reported_in_markets():
    assert "exported to 0.42 more markets (95 % CI 0.13 to 0.71)" in effect_sentence(
        "network", "n_destinations", 0.42, 0.13, 0.71)
    assert "exported to 0.30 fewer markets (95 % CI 0.10 to 0.50)" in effect_sentence(
        "network", "n_destinations", -0.30, -0.50, -0.10)


def test_entering_a_new_market_is_in_percentage_points():
    sentence = effect_sentence("network", "enters_new_market", 0.030, 0.008, 0.052)
    assert "3.0 percentage points (95 % CI 0.8 to 5.2) more likely to enter a new export market" in sentence


def test_not_yet_treated_comparison_is_named_as_such():
    sentence = effect_sentence("advisory", "exporter", 0.041, 0.018, 0.064, control_group="notyettreated")
    assert sentence.endswith("compared with similar firms that had not yet received support.")


def test_negative_numbers_use_a_typographic_minus_and_no_negative_zero():
    assert format_number(-1.25, 1) == "\u22121.2"
    assert format_number(-0.01, 1) == "0.0"


@pytest.mark.parametrize("seed", range(5))
def test_no_sentence_claims_a_direction_when_the_interval_includes_zero(seed):
    rng = np.random.default_rng(seed)
    for outcome in ("exporter", "n_destinations", "starts_exporting", "enters_new_market"):
        for _ in range(40):
            estimate = rng.normal(0, 0.1)
            half_width = abs(rng.normal(0, 0.15)) + 1e-6
            lower, upper = estimate - half_width, estimate + half_width
            sentence = effect_sentence("advisory", outcome, estimate, lower, upper, mde=0.05)
            claims = any(word in sentence for word in DIRECTIONAL_WORDS)
            assert claims == (lower > 0 or upper < 0), sentence


def test_paragraph_per_service_uses_the_fixture_signs():
    estimates = make_estimates()
    diagnostics = make_diagnostics()
    paragraphs = summary_paragraphs(estimates, diagnostics)
    assert list(paragraphs) == ["advisory", "network", "grant"]
    assert paragraphs["advisory"].startswith("Firms that started with advisory support were 4.1 percentage points "
                                             "(95 % confidence interval 1.8 to 6.4) more likely to export")
    assert "no statistically detectable change in the probability of exporting" in paragraphs["network"]
    assert "less likely to export" in paragraphs["grant"]
    # the failing pre-trend test of the fixture is flagged where it applies only
    assert "different trends for the probability of starting to export (p = 0.012)" in paragraphs["grant"]
    assert "different trends" not in paragraphs["advisory"]


def test_withheld_results_are_named_without_numbers():
    estimates = make_estimates()
    keep = ~((estimates["treatment"] == "grant") & (estimates["outcome"] == "exporter"))
    paragraph = service_paragraph("grant", estimates[keep], suppressed={("grant", "exporter")}, min_firms=10)
    assert "Results for the probability of exporting are not published because they rest on fewer than 10" \
        in paragraph
    assert "less likely to export" not in paragraph


def test_dynamic_horizon_sentence_uses_the_simultaneous_band_in_plain_words():
    estimates = make_estimates()
    row = estimates[(estimates["treatment"] == "advisory") & (estimates["outcome"] == "exporter")
                    & (estimates["aggregation"] == "dynamic") & (estimates["estimator"] == "cs_did")
                    & (estimates["event_time"] == 2.0)]
    paragraph = service_paragraph("advisory", estimates)
    assert "95 % confidence band for all years jointly" in paragraph
    lower = format_number(100 * row["ci_lower"].iloc[0], 1)
    assert f"jointly {lower} to" in paragraph


def test_no_estimates_gives_an_explicit_sentence():
    empty = make_estimates().iloc[0:0]
    assert service_paragraph("advisory", empty) == "No estimates are available for advisory support."


def test_treated_firms_are_named_by_the_service_they_started_with():
    paragraphs = summary_paragraphs(make_estimates(), make_diagnostics())
    text = " ".join(paragraphs.values())
    assert "Firms that started with an export grant were" in text
    assert "received advisory support" not in text and "received an export grant" not in text


@pytest.mark.parametrize("alpha, level", [(0.10, "90 %"), (0.01, "99 %"), (0.025, "97.5 %")])
def test_confidence_level_follows_alpha(alpha, level):
    diagnostics = make_diagnostics()
    diagnostics["plan"]["alpha"] = alpha
    paragraphs = summary_paragraphs(make_estimates(), diagnostics)
    assert paragraphs["advisory"].startswith(f"Firms that started with advisory support were 4.1 percentage points "
                                             f"({level} confidence interval 1.8 to 6.4)")
    assert f"{level} confidence band for all years jointly" in paragraphs["advisory"]
    assert "95 %" not in " ".join(paragraphs.values())


def test_without_bootstrap_the_event_time_intervals_are_called_pointwise():
    diagnostics = make_diagnostics()
    diagnostics["plan"]["bootstrap_iterations"] = 0
    text = " ".join(summary_paragraphs(make_estimates(), diagnostics).values())
    assert "95 % confidence interval" in text
    assert "simultaneous" not in text and "uniform" not in text and "jointly" not in text
    assert Intervals(0.05, uniform_bands=False).band_plural == "pointwise intervals"


def test_alpha_outside_the_unit_interval_is_refused_with_its_key():
    with pytest.raises(ValueError, match=r"diagnostics\['plan'\]\['alpha'\] must be in \(0, 1\), got 5"):
        Intervals.from_plan({"alpha": 5})


def _exporter_path(treatment: str, path: dict[int, tuple[float, float]], n_late: int = 40) -> pd.DataFrame:
    """CS-DiD exporter estimates: a significant overall effect and dynamic (estimate, half-width) by event time."""
    estimates = make_estimates()
    keep = ~((estimates["treatment"] == treatment) & (estimates["outcome"] == "exporter")
             & (estimates["aggregation"] == "dynamic") & (estimates["estimator"] == "cs_did"))
    rows = [{"treatment": treatment, "outcome": "exporter", "estimator": "cs_did", "aggregation": "dynamic",
             "event_time": float(e), "estimate": est, "std_error": half / 2.8, "ci_lower": est - half,
             "ci_upper": est + half, "p_value": 0.5, "n_treated": 120 if e < 3 else n_late, "n_control": 900}
            for e, (est, half) in path.items()]
    return pd.concat([estimates[keep], pd.DataFrame(rows)], ignore_index=True)


def test_an_effect_that_fades_by_year_three_is_reported_as_no_longer_detectable():
    # like the demo's grants: clearly positive up to e = 2, zero from e = 3 on
    path = {0: (0.08, 0.03), 1: (0.12, 0.03), 2: (0.10, 0.035), 3: (-0.007, 0.036), 4: (-0.017, 0.04),
            5: (-0.007, 0.045)}
    paragraph = service_paragraph("grant", _exporter_path("grant", path))
    assert ("From three years after starting on, the difference in the probability of exporting was no longer "
            "statistically detectable in any year up to five years after starting (latest: \u22120.7 pp, "
            "95 % confidence band for all years jointly \u22125.2 to 3.8; resting on 40 firms).") in paragraph


def test_a_lasting_effect_is_reported_with_the_latest_event_time():
    path = {0: (0.03, 0.02), 1: (0.05, 0.02), 2: (0.07, 0.03), 3: (0.07, 0.03), 4: (0.08, 0.035),
            5: (0.09, 0.04)}
    paragraph = service_paragraph("advisory", _exporter_path("advisory", path))
    assert ("The difference stayed statistically detectable in every year from three to five years after "
            "starting; firms were 9.0 percentage points (95 % confidence band for all years jointly 5.0 to 13.0) more likely to "
            "export five years after starting (resting on 40 firms).") in paragraph


def test_mixed_late_effects_count_the_detectable_years_and_never_claim_the_last_one():
    path = {0: (0.03, 0.02), 1: (0.05, 0.02), 2: (0.07, 0.03), 3: (0.07, 0.03), 4: (0.06, 0.035),
            5: (0.05, 0.07)}
    paragraph = service_paragraph("network", _exporter_path("network", path))
    assert ("From three years after starting on, the difference in the probability of exporting was statistically "
            "detectable in 2 of 3 years; five years after starting, it was not distinguishable from zero "
            "(5.0 pp, 95 % confidence band for all years jointly \u22122.0 to 12.0; resting on 40 firms).") in paragraph


def test_late_event_times_on_too_few_firms_are_not_used_for_persistence():
    path = {0: (0.03, 0.02), 1: (0.05, 0.02), 2: (0.07, 0.03), 3: (0.0, 0.03)}
    paragraph = service_paragraph("advisory", _exporter_path("advisory", path, n_late=6), min_firms=10)
    assert "From three years" not in paragraph and "stayed statistically detectable" not in paragraph


def test_nan_standard_error_reads_could_not_be_estimated():
    sentence = effect_sentence("advisory", "exporter", 0.03, np.nan, np.nan)
    assert sentence == ("The effect on the probability of exporting on average in the years after starting "
                        "could not be estimated for firms that started with advisory support (no standard error).")
    estimates = make_estimates()
    broken = (estimates["treatment"] == "network") & (estimates["outcome"] == "exporter") \
        & (estimates["estimator"] == "cs_did")
    estimates.loc[broken, "std_error"] = np.nan
    paragraph = service_paragraph("network", estimates)
    assert "could not be estimated" in paragraph
    assert "n/a" not in paragraph and "no statistically detectable change in the probability of exporting" \
        not in paragraph


def test_pairs_that_could_not_be_estimated_are_named():
    estimates = make_estimates()
    missing = (estimates["treatment"] == "grant") & (estimates["outcome"] == "enters_new_market")
    not_estimable = pd.DataFrame([{"treatment": "grant", "outcome": "enters_new_market",
                                   "reason": "outcome is constant in the sample"}])
    paragraphs = summary_paragraphs(estimates[~missing], {**make_diagnostics(), "not_estimable": not_estimable})
    assert ("The effect on the probability of entering a new export market could not be estimated "
            "(see the methods annex).") in paragraphs["grant"]


def test_the_average_effect_names_its_window_of_event_times():
    sentence = effect_sentence("advisory", "exporter", 0.041, 0.018, 0.064, window=3)
    assert ("4.1 percentage points (95 % CI 1.8 to 6.4) more likely to export on average over the year they started "
            "and the three years after, compared with") in sentence
    assert "on average over the year they started and the year after," in effect_sentence(
        "advisory", "exporter", 0.041, 0.018, 0.064, window=1)
    assert "in the year they started," in effect_sentence("advisory", "exporter", 0.041, 0.018, 0.064, window=0)


def test_the_summary_quotes_the_headline_not_rs_simple_average():
    paragraphs = summary_paragraphs(make_estimates(), make_diagnostics())
    assert "4.1 percentage points" in paragraphs["advisory"]
    assert "2.5 percentage points (95 %" not in paragraphs["advisory"]  # simple = 0.6 x headline in the fixture


@pytest.mark.parametrize("cs, no_covariates, twfe, expected, absent", [
    (0.074, 0.092, 0.092, "the gap of 1.8 pp is mostly covariate adjustment", "cohort"),
    (0.074, 0.075, 0.092, "the gap of 1.8 pp is not covariate adjustment", "mostly covariate"),
    (0.070, 0.080, 0.090, "both covariate adjustment (1.0 pp) and", "mostly"),
    (0.074, 0.090, 0.0742, "agree", "gap of"),
])
def test_the_twfe_comparison_is_worded_from_the_numbers(cs, no_covariates, twfe, expected, absent):
    sentence = comparison_sentence("exporter", cs, no_covariates, twfe)
    assert expected in sentence and absent not in sentence
    assert format_number(100 * twfe, 1) in sentence and format_number(100 * cs, 1) in sentence
    if "not covariate" in expected:
        assert "weights cohorts and years" in sentence and "cohort heterogeneity" in sentence


def test_long_run_event_times_say_how_many_cohorts_and_firms_they_rest_on():
    path = {0: (0.03, 0.02), 1: (0.05, 0.02), 2: (0.07, 0.03), 3: (0.07, 0.03), 4: (0.08, 0.035),
            5: (0.09, 0.04)}
    support = pd.DataFrame([{"treatment": "advisory", "outcome": "exporter", "estimator": "cs_did",
                             "aggregation": "dynamic", "event_time": float(e), "n_cohorts": max(6 - e, 1)}
                            for e in path])
    paragraph = service_paragraph("advisory", _exporter_path("advisory", path), support=support)
    assert "five years after starting (resting on 40 firms in 1 cohort)." in paragraph
