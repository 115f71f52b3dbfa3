"""The "How support works" section and the mechanism rows of estimates.csv: wording, figures, disclosure."""
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from analyses.reporting import ReportSettings, build_report, check_disclosure
from analyses.reporting.mechanism_plots import dose_plot
from analyses.reporting.mechanisms import (
    DOSE_WARNING, MAX_SUMMARY_WORDS, MECHANISM_OUTCOMES, in_sentence, is_known_treatment, mechanism_section,
    summary_sentences,
)
from analyses.reporting.summary import OUTCOMES, SERVICES, Intervals
from analyses.reporting.report import combine_estimates
from tests.report_fixtures import DOSE_GRIDS, make_estimates, make_mechanisms, report_inputs

HTML_ONLY = ReportSettings(formats=("html",))


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mechanisms")
    inputs = report_inputs(directory)
    result = build_report(**inputs, output_dir=directory / "out", settings=HTML_ONLY)
    return result, inputs, result.html_path.read_text(encoding="utf-8")


def _summary(html: str) -> str:
    return _text(html.split("How support works</h3>")[1].split("</div>")[0])


def _sentences(html: str) -> list[str]:
    """The summary's mechanism sentences, without their bold lead-in."""
    block = html.split("How support works</h3>")[1].split("</div>")[0]
    return [_text(p) for p in re.findall(r"</strong>(.*?)</p>", block, flags=re.S)]


def test_summary_has_one_sentence_per_supported_mechanism_and_none_for_the_others(built):
    _, _, html = built
    summary = _summary(html)
    assert _sentences(html) == [
        "Adding network services after advisory support raised the probability of exporting by 4.0 percentage points "
        "(95 % confidence interval 1.6 to 6.4).",
        "Each additional hour of advisory support raised the probability of exporting by 0.100 percentage points "
        "(95 % confidence interval 0.041 to 0.159); dose comparisons need stronger assumptions.",
        "For network services, the effect on the probability of exporting differed by cluster or hub membership "
        "(outside clusters and hubs 6.0 pp, in a cluster or hub 1.0 pp).",
        "Advisory support raised the number of non-EU destinations by 0.20 destinations (95 % confidence interval "
        "0.10 to 0.30).",
        "Advisory support raised export value (non-exporters counted as zero) by 12.0 % (95 % confidence interval "
        "4.2 to 19.8).",
    ]
    block = html.split("How support works</h3>")[1].split("</div>")[0]
    assert re.findall(r"<strong>([^<]+)\.</strong>", block) == [
        "Adding a second service", "Size of support (dose)", "For whom", "Which markets", "How much (export value)"]
    # not supported: the bundle, network's and grant's dose slopes, the size classes, EU destinations, persistence
    for absent in ("within a year", "network services raised", "export grant raised", "size class",
                   "number of EU destinations", "For how long", "three years running"):
        assert absent not in summary, absent


def _row(family, treatment, outcome, estimate, half_width, aggregation="dynamic_balanced", subgroup="",
         p_adjusted=np.nan):
    return {"treatment": treatment, "outcome": outcome, "estimator": "cs_did", "aggregation": aggregation,
            "event_time": np.nan, "estimate": estimate, "std_error": half_width / 1.96,
            "ci_lower": estimate - half_width, "ci_upper": estimate + half_width, "p_value": 0.01,
            "n_treated": 100, "n_control": 900, "subgroup": subgroup, "dose": np.nan, "p_value_adjusted": p_adjusted,
            "family": family}


def test_a_mechanism_with_many_supported_results_gets_one_sentence_leading_with_the_clearest():
    """Markets: 3 services x 4 outcomes all supported. The old summary joined twelve phrases into one sentence; the
    new one states the result whose interval lies farthest from zero and counts the other eleven."""
    rows = [_row("markets", service, outcome, 0.05 + 0.01 * i, 0.04)
            for i, (service, outcome) in enumerate((s, o) for s in ("advisory", "network", "grant")
                                                   for o in ("new_eu_destination", "new_non_eu_destination",
                                                             "n_eu_destinations", "n_non_eu_destinations"))]
    rows[5] = _row("markets", "network", "new_non_eu_destination", -0.08, 0.01)  # clearest: 8 half-widths from zero
    sentences = summary_sentences(pd.DataFrame(rows), Intervals())
    assert sentences == [{"mechanism": "Which markets", "text": (
        "Network services lowered the probability that an exporter adds a new non-EU destination by 8.0 percentage "
        "points (95 % confidence interval 7.0 to 9.0); eleven more detectable results in "
        "\u201cHow support works\u201d.")}]


def test_for_whom_needs_a_rejecting_adjusted_test_and_quotes_the_extreme_groups():
    groups = [_row("subgroups", "advisory", "exporter", e, 0.01, subgroup=f"size_class={v}")
              for v, e in (("micro", 0.01), ("small", 0.03), ("medium", 0.07))]
    test = _row("subgroups", "advisory", "exporter", np.nan, np.nan, "subgroup_difference", "size_class", 0.04)
    rows = pd.DataFrame([*groups, test])
    assert summary_sentences(rows, Intervals()) == [{"mechanism": "For whom", "text": (
        "For advisory support, the effect on the probability of exporting differed by size class "
        "(medium and larger firms 7.0 pp, micro firms 1.0 pp).")}]
    # the unadjusted p-value (0.01) would reject, the adjusted one does not: no sentence
    assert summary_sentences(rows.assign(p_value_adjusted=0.2), Intervals()) == []


def test_a_result_the_familys_adjustment_does_not_support_is_not_stated():
    """The interval of the sequence excludes zero, but its Romano-Wolf adjusted p-value (0.059, as measured on the
    5,000-firm demo) does not reject: the summary says nothing about sequences."""
    row = _row("sequences", "network>grant", "exporter", 0.10, 0.077, p_adjusted=0.059)
    assert summary_sentences(pd.DataFrame([row]), Intervals()) == []
    assert summary_sentences(pd.DataFrame([{**row, "p_value_adjusted": 0.02}]), Intervals())[0]["text"].startswith(
        "Adding an export grant after network services raised the probability of exporting by 10.0 percentage points")
    assert len(summary_sentences(pd.DataFrame([{**row, "p_value_adjusted": np.nan}]), Intervals())) == 1


@pytest.mark.parametrize("alpha", [0.05, 0.025])
def test_every_summary_sentence_is_short_for_every_treatment_outcome_and_family(alpha):
    """Worst cases: the longest treatment names, every outcome the report knows, many other supported results."""
    outcomes = sorted(set(OUTCOMES) | set(MECHANISM_OUTCOMES))
    treatments = {"bundles": ["advisory+grant", "advisory+network", "grant+network"],
                  "sequences": [f"{a}>{b}" for a in SERVICES for b in SERVICES if a != b]}
    frames = []
    for family in ("bundles", "sequences", "markets", "persistence", "dose", "value", "subgroups"):
        for treatment in treatments.get(family, SERVICES):
            for outcome in (["export_value_eur"] if family == "value" else outcomes):
                if family == "subgroups":
                    rows = [_row(family, treatment, outcome, -0.5, 0.2, subgroup=f"size_class={v}")
                            for v in ("micro", "small", "medium")]
                    rows.append(_row(family, treatment, outcome, -0.5, 0.2, "subgroup_difference", "size_class",
                                     0.01))
                else:
                    aggregation = {"dose": "dose_slope", "value": "simple"}.get(family, "dynamic_balanced")
                    rows = [_row(family, treatment, outcome, -0.0123, 0.01, aggregation)]
                frames.append(pd.DataFrame(rows))
    everything = pd.concat(frames, ignore_index=True)
    for one in frames:  # each row as the lead, with every other row of its family supported too
        family = one["family"].iloc[0]
        lead = one.assign(ci_lower=one["ci_lower"] * 3, ci_upper=one["ci_upper"] - 0.002)
        rows = pd.concat([lead, everything[everything["family"] == family]], ignore_index=True)
        sentences = summary_sentences(rows, Intervals(alpha=alpha))
        assert len(sentences) == 1
        assert len(sentences[0]["text"].split()) <= MAX_SUMMARY_WORDS, sentences[0]["text"]


def test_section_explains_the_estimands_and_prints_the_dose_warning(built):
    _, _, html = built
    section = _text(html.split('id="section-mechanisms"')[1].split("</section>")[0])
    assert "not a ranking of services across populations that are not comparable" in section
    assert _text(DOSE_WARNING.replace("'", "&#39;")) in section
    assert "intensive margin is conditional on an outcome of support and is a description, not an effect" in section
    assert "Advisory support: intensive margin among exporting firm-years (descriptive)" in section
    assert "Advisory support: proportional effect on export value, zeros included Export value (zeros included) " \
           "(%) 12.0 4.2 to 19.8" in section
    # the slope of a grant is per EUR 1,000 of grant, not per euro
    assert "Export grants: average slope per EUR 1,000 of dose (ACRT) Exporting (pp per EUR 1,000) 0.01" in section
    assert "Network services: Cluster or hub membership Exporting (pp) 5.0 0.009 0.018 differ" in section
    assert "Advisory support: Size class Exporting (pp) \u2013 0.600 1.000 no detectable difference" in section
    # each group's effect in a table too, not only as a point in the forest plot
    assert "Table M4. Effects by group of firms" in section
    assert "Network services: Outside clusters and hubs Exporting (pp)" in section


def test_mechanism_figures_use_labels_not_codes(built):
    _, _, html = built
    section = html.split('id="section-mechanisms"')[1].split("</section>")[0]
    images = re.findall(r'<img [^>]*data-axis-titles="([^"]*)" data-tick-labels="([^"]*)"', section)
    assert len(images) == 4  # three dose-response curves and one forest plot
    for titles, ticks in images:
        assert titles.strip(" |")
        assert not re.findall(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", titles + " " + ticks), (titles, ticks)
    forest = [ticks for _, ticks in images if "Outside clusters and hubs" in ticks]
    assert forest and "Network services: Outside clusters and hubs (difference: adjusted p = 0.018)" in forest[0]


def test_one_withheld_subgroup_withholds_its_whole_comparison(tmp_path):
    inputs = report_inputs(tmp_path)
    mechanisms = inputs["mechanisms"]
    mechanisms.loc[mechanisms["subgroup"] == "in_cluster=1", "n_treated"] = 8
    result = build_report(**inputs, output_dir=tmp_path / "out", settings=HTML_ONLY)
    published = pd.read_csv(result.estimate_files["csv"], keep_default_na=False, na_values=[""])
    assert not published["subgroup"].str.startswith("in_cluster").any()  # both values and the test
    assert published["subgroup"].eq("size_class").any()
    reasons = result.disclosure.suppressed_estimates
    assert reasons["reason"].str.startswith("secondary suppression: protects").sum() == 2
    html = result.html_path.read_text(encoding="utf-8")
    assert "cluster or hub membership" not in _summary(html)
    # withheld, not vanished: the forest plot and the table of tests say so, without a number
    section = _text(html.split('id="section-mechanisms"')[1].split("</section>")[0])
    assert "Network services: Cluster or hub membership Exporting (pp) withheld (protects another group)" in section
    ticks = re.findall(r'data-tick-labels="([^"]*)"', html.split('id="section-mechanisms"')[1])
    forest = [t for t in ticks if "In a cluster or hub" in t]
    assert forest and "Network services: In a cluster or hub: withheld (fewer than 10 firms)" in forest[0]
    assert "Network services: Outside clusters and hubs: withheld (protects another group)" in forest[0]
    assert "Advisory support: Micro firms (under 10 employees)" in forest[0]  # the published groups stay
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', html.split('id="section-mechanisms"')[1])
    assert any("(2 withheld, too few firms)" in alt for alt in alts)


def test_mechanism_rows_share_keys_with_headline_rows_without_colliding():
    """A subgroup row has the headline's treatment, outcome, estimator and aggregation: it must not withhold or
    publish the headline by mistake."""
    headline = make_estimates()
    mechanisms = make_mechanisms()
    mechanisms.loc[mechanisms["subgroup"] == "in_cluster=0", "n_treated"] = 3
    combined = combine_estimates(headline, mechanisms)
    result = check_disclosure(combined, None)
    hidden = result.suppressed_keys()
    assert ("network", "exporter", "cs_did", "dynamic_balanced", None, "", None, "headline") not in hidden
    assert ("network", "exporter", "cs_did", "dynamic_balanced", None, "in_cluster=0", None, "subgroups") in hidden


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.assign(family=m["family"].where(m.index != 2, "magic")), r"mechanism estimates row 2: column 'family'"),
    (lambda m: m.assign(treatment=m["treatment"].where(m.index != 0, "network+advisory")),
     r"mechanism estimates row 0: column 'treatment'"),
    (lambda m: m.assign(p_value_adjusted=m["p_value_adjusted"].where(m.index != 1, 1.5)),
     r"row 1: column 'p_value_adjusted' must lie in \[0, 1\]"),
    (lambda m: m.drop(columns=["dose"]), r"mechanism estimates must have exactly the columns"),
])
def test_bad_mechanism_rows_fail_with_table_row_and_column(mutate, message):
    with pytest.raises(ValueError, match=message):
        combine_estimates(make_estimates(), mutate(make_mechanisms()))


def test_treatments_and_labels():
    assert is_known_treatment("advisory+network") and is_known_treatment("grant>advisory")
    assert not is_known_treatment("network+advisory") and not is_known_treatment("grant>grant")
    assert in_sentence("Non-EU destinations") == "non-EU destinations"
    assert in_sentence("EU destinations") == "EU destinations" and in_sentence("Exporting") == "exporting"
    assert np.isnan(combine_estimates(make_estimates())["dose"]).all()


def _limitations(html: str) -> str:
    return unescape(_text(html.split('id="h-limits"')[1].split("</section>")[0]))


def test_limitations_say_combinations_were_estimated_when_the_plan_ran_them(built, tmp_path):
    _, _, html = built
    limits = _limitations(html)
    assert "Combinations (starting with two services within a year, and adding a second service after the first) are " \
           "estimated in \u201cHow support works\u201d for the firms that chose them" in limits
    assert "not a ranking of services or combinations" in limits and "not identified" not in limits
    # headline only (no mechanism rows, the plan's families ran neither): the old limitation stands
    inputs = report_inputs(tmp_path)
    inputs["diagnostics"]["plan"]["families"] = {"run": ["dose", "markets"]}
    result = build_report(**{**inputs, "mechanisms": None}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    limits = _limitations(result.html_path.read_text(encoding="utf-8"))
    assert "effects of combining services are not identified" in limits and "Combinations" not in limits
    # only sequences planned (none estimable, so no rows): named alone
    inputs["diagnostics"]["plan"]["families"] = {"run": ["sequences"]}
    result = build_report(**{**inputs, "mechanisms": None}, output_dir=tmp_path / "out2", settings=HTML_ONLY)
    limits = _limitations(result.html_path.read_text(encoding="utf-8"))
    assert "Combinations (adding a second service after the first) are estimated" in limits


def test_a_withheld_row_of_any_mechanism_table_says_withheld_instead_of_vanishing(tmp_path):
    inputs = report_inputs(tmp_path)
    mechanisms = inputs["mechanisms"]
    mechanisms.loc[mechanisms["outcome"] == "n_eu_destinations", "n_treated"] = 6
    result = build_report(**inputs, output_dir=tmp_path / "out", settings=HTML_ONLY)
    section = _text(result.html_path.read_text(encoding="utf-8").split('id="section-mechanisms"')[1])
    markets = section.split("Table M6.")[1].split("How much")[0]
    assert "Advisory support EU destinations (destinations) withheld (fewer than 10 firms)" in markets
    assert "Advisory support Non-EU destinations (destinations) 0.20 0.10 to 0.30" in markets


def _curve(treatment: str, low: float, high: float, half_width: float) -> pd.DataFrame:
    """A dose curve of 11 grid doses from ``low`` to ``high`` (outcome units) with a uniform band of +-half_width."""
    estimate = np.linspace(low, high, 11)
    return pd.DataFrame({"dose": np.linspace(*DOSE_GRIDS[treatment], 11), "estimate": estimate,
                         "ci_lower": estimate - half_width, "ci_upper": estimate + half_width})


def _ticks(plot) -> list[float]:
    return [float(t.replace("\u2212", "-")) for t in plot.tick_labels if re.fullmatch(r"[\u2212-]?[\d.]+", t)]


@pytest.mark.parametrize("outcome", ["exporter", "sustained_exporter", "new_non_eu_destination"])
def test_a_share_dose_curve_is_cut_at_the_logical_bound_and_says_so(outcome):
    """On the 10,000-firm demo the grant band reached +120 pp on a probability: cut at +-100 pp, with a caption."""
    plot = dose_plot(_curve("network", -0.9, 0.9, 0.6), "network", outcome, median_dose=4.4)
    assert max(_ticks(plot)) == 100 and min(_ticks(plot)) == -100, plot.tick_labels  # doses run from 1 to 8
    assert "band is cut at \u2212100 and +100 percentage points" in plot.alt
    # a count is not bounded: no cut, no such words
    count = dose_plot(_curve("network", -0.9, 0.9, 0.6), "network", "n_destinations", median_dose=4.4)
    assert "cut" not in count.alt


@pytest.mark.parametrize("treatment, median, words", [
    ("advisory", 64.0, "at the median treated dose (65.0 advisory hours, the nearest dose shown)"),
    ("network", 4.4, "at the median treated dose (4.5 network events, the nearest dose shown)"),
    ("grant", 80_000.0, "at the median treated dose (77.5 EUR 1,000 of grant, the nearest dose shown)"),
])
def test_a_dose_caption_leads_with_the_median_dose_in_its_unit_and_says_the_ends_rest_on_few_firms(
        treatment, median, words):
    plot = dose_plot(_curve(treatment, 0.0, 0.2, 0.05), treatment, "exporter", median_dose=median,
                     dose_grid=(0.05, 0.95))
    assert words in plot.alt
    assert re.search(r"the effect is 10\.0 percentage points \(95 % uniform band 5\.0 to 15\.0\)", plot.alt), plot.alt
    assert "smallest dose shown" not in plot.alt and "at the largest" not in plot.alt
    assert ("the 5 % of treated firms with the smallest doses and the 5 % with the largest lie outside the curve, "
            "and its ends rest on few firms") in plot.alt
    # no median known: the middle of the doses shown, said as such
    assert "in the middle of the doses shown" in dose_plot(_curve(treatment, 0.0, 0.2, 0.05), treatment,
                                                           "exporter").alt


def test_every_mechanism_table_gives_the_unit_of_each_row(built):
    _, _, html = built
    section = _text(html.split('id="section-mechanisms"')[1].split("</section>")[0])
    assert section.count("Outcome (unit)") == 8  # Tables M1-M8
    value = section.split("Table M7.")[1]
    assert "proportional effect on export value, zeros included Export value (zeros included) (%) 12.0" in value
    assert "extensive margin (exporting or not) Exporting (pp)" in value
    assert "Export value of exporting firms (%)" in value
    assert "Advisory support Non-EU destinations (destinations) 0.20" in section
    # a slope is per unit of dose
    assert "Export grants: average slope per EUR 1,000 of dose (ACRT) Exporting (pp per EUR 1,000) 0.01" in section


def _subgroup_rows() -> pd.DataFrame:
    rows = [_row("subgroups", s, "exporter", 0.01 * i, 0.01, subgroup=g)
            for i, (s, g) in enumerate((s, g) for s in ("grant", "network", "advisory")
                                       for g in ("exported_before=0", "size_class=medium", "in_cluster=1",
                                                 "size_class=micro", "in_cluster=0", "size_class=small"))]
    tests = [_row("subgroups", s, "exporter", np.nan, np.nan, "subgroup_difference", "size_class", 0.029)
             for s in ("grant", "network", "advisory")]
    return pd.DataFrame([*rows, *tests])


def test_forest_plot_and_table_m4_share_the_plans_order_and_the_plot_says_adjusted_p():
    section = mechanism_section(_subgroup_rows(), Intervals())
    expected = [f"{service}: {group}" for service in ("Advisory support", "Network services", "Export grants")
                for group in ("Outside clusters and hubs", "In a cluster or hub", "Micro firms (under 10 employees)",
                              "Small firms (10\u201349)", "Medium and larger firms (50+)",
                              "Did not export before support")]
    assert [effect.label for effect in section["subgroups"]] == expected
    ticks = section["subgroup_plots"][0].tick_labels
    labels = [t.split(" (difference")[0] for t in ticks if ": " in t]
    assert labels == expected
    assert "Advisory support: Micro firms (under 10 employees) (difference: adjusted p = 0.029)" in ticks
    assert not any("(difference p =" in t for t in ticks)
    # the groupings in the plan's order in the alt text too
    assert "(cluster or hub membership, size class, exporting before support)" in section["subgroup_plots"][0].alt


def test_a_test_of_more_than_two_groups_is_explained_under_table_m5(built):
    _, _, html = built
    section = _text(html.split('id="section-mechanisms"')[1].split("</section>")[0])
    m5 = section.split("Table M5.")[1].split("Which markets")[0]
    assert "Advisory support: Size class Exporting (pp) \u2013" in m5
    assert ("For a grouping with more than two groups (size class) the test is a joint Wald test that all groups' "
            "effects are equal; there is no single difference (\u2013).") in unescape(m5)


def test_the_section_says_which_effect_on_exporting_is_the_reference(built):
    _, _, html = built
    section = unescape(_text(html.split('id="section-mechanisms"')[1].split("</section>")[0]))
    dose = section.split("Dose-response")[1].split("Table M3.")[0]
    value = section.split("How much: export value")[1].split("Table M7.")[0]
    for part in (dose, value):
        assert "the headline (Table 1) is the reference estimate of each service's effect" in part, part
    assert "balanced panel" in dose and "first-year controls" in value
