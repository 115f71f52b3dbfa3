"""The "How support works" section and the mechanism rows of estimates.csv: wording, figures, disclosure."""
import re

import numpy as np
import pandas as pd
import pytest

from analyses.reporting import ReportSettings, build_report, check_disclosure
from analyses.reporting.mechanisms import DOSE_WARNING, in_sentence, is_known_treatment
from analyses.reporting.report import combine_estimates
from tests.report_fixtures import make_estimates, make_mechanisms, report_inputs

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


def test_summary_has_one_sentence_per_supported_mechanism_and_none_for_the_others(built):
    _, _, html = built
    summary = _summary(html)
    assert "adding a second one later made a further difference: network services added after advisory support " \
           "changed exporting by 4.0 percentage points (95 % confidence interval 1.6 to 6.4)" in summary
    assert "The effect changed with the size of the first dose, for advisory support (exporting: 0.100 percentage " \
           "points (95 % confidence interval 0.041 to 0.159) per additional hour); this comparison of doses rests on " \
           "a stronger assumption" in summary
    assert "for network services, the effect on exporting differed by cluster or hub membership (outside clusters " \
           "and hubs 6.0 pp, in a cluster or hub 1.0 pp)" in summary
    assert "advisory support changed non-EU destinations by 0.20 destinations" in summary
    assert "advisory support: 12.0 % (95 % confidence interval 4.2 to 19.8)" in summary
    # not supported: the bundle, network's and grant's dose slopes, the size classes, EU destinations, persistence
    for absent in ("two services within a year", "network services (exporting", "export grants (exporting",
                   "size class", "changed EU destinations", "Persistence", "sustained"):
        assert absent not in summary, absent
    assert summary.count(". ") + 1 == 5  # five sentences, one per supported mechanism


def test_section_explains_the_estimands_and_prints_the_dose_warning(built):
    _, _, html = built
    section = _text(html.split('id="section-mechanisms"')[1].split("</section>")[0])
    assert "not a ranking of services across populations that are not comparable" in section
    assert _text(DOSE_WARNING.replace("'", "&#39;")) in section
    assert "intensive margin is conditional on an outcome of support and is a description, not an effect" in section
    assert "Advisory support: intensive margin among exporting firm-years (descriptive)" in section
    assert "Advisory support: proportional effect on export value, zeros included Export value (zeros included) " \
           "12.0 4.2 to 19.8" in section
    # the slope of a grant is per EUR 1,000 of grant, not per euro
    assert "Export grants: average slope per EUR 1,000 of dose (ACRT) Exporting 0.01" in section
    assert "Network services: Cluster or hub membership Exporting 5.0 0.009 0.018 differ" in section
    assert "Advisory support: Size class Exporting \u2013 0.600 1.000 no detectable difference" in section


def test_mechanism_figures_use_labels_not_codes(built):
    _, _, html = built
    section = html.split('id="section-mechanisms"')[1].split("</section>")[0]
    images = re.findall(r'<img [^>]*data-axis-titles="([^"]*)" data-tick-labels="([^"]*)"', section)
    assert len(images) == 4  # three dose-response curves and one forest plot
    for titles, ticks in images:
        assert titles.strip(" |")
        assert not re.findall(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", titles + " " + ticks), (titles, ticks)
    forest = [ticks for _, ticks in images if "Outside clusters and hubs" in ticks]
    assert forest and "Network services: Outside clusters and hubs (difference p = 0.018)" in forest[0]


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
    assert "Outside clusters" not in html and "cluster or hub membership" not in _summary(html)


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
