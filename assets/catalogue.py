"""Who owns each asset, what it is built with and what it means for the agency, on every asset page.

Applied to the asset definitions in ``pipelines/definitions.py``: the business sentence comes first,
the technical description of the stage module follows it.
"""

import dagster as dg

from analyses.contracts import SOURCES, load_contracts

#: Data engineers answer for getting deliveries in and validated; the evaluation unit for what is estimated and published.
DATA_ENGINEERING = "team:data-engineering"
EVALUATION_UNIT = "team:evaluation-unit"
OWNERS = {"ingestion": DATA_ENGINEERING, "contracts": DATA_ENGINEERING, "panel": EVALUATION_UNIT,
          "analysis": EVALUATION_UNIT, "mechanisms": EVALUATION_UNIT, "reporting": EVALUATION_UNIT}

_CONTRACTS = load_contracts()
BUSINESS = {
    **{f"raw_{s}": f"{_CONTRACTS[s].title} exactly as the agency delivered it (from: {_CONTRACTS[s].owner})."
       for s in SOURCES},
    **{f"clean_{s}": f"The {_CONTRACTS[s].title.lower()} the evaluation may use: the delivered rows that meet the "
       "data contract; the others are set aside with their reason, and the checks say how this delivery differs "
       "from the previous one." for s in SOURCES},
    "data_quality": "How much of each delivered file could be used and why rows were set aside; published with the report.",
    "firm_year_panel": "Every firm and year the evaluation looks at: whether and where the firm exported, and when "
                       "its support started.",
    "panel_account": "Where every usable row went: into the panel, or left out with the reason.",
    "did_estimates": "What each service (advisory, network, grants) did to firms' exporting, with confidence "
                     "intervals: the numbers behind the report.",
    "evaluation_diagnostics": "How far the estimates can be trusted: trends before support, comparability of "
                              "supported and other firms, effects too small to detect, what could not be estimated.",
    "sensitivity": "How far each headline conclusion survives if supported and comparison firms would have drifted "
                   "apart after support: the breakdown point in plain words.",
    "robustness": "Whether the headline holds under the pre-registered alternatives (anticipation, another comparison "
                  "group, covariate timing, without the largest exporters) and a placebo that should show nothing.",
    "mechanism_dose": "Whether more support (advisory hours, grant euros, network events in the first episode) "
                      "did more for exporting: dose-response curves.",
    "mechanism_subgroups": "For whom support worked: effects by cluster membership, firm size and prior exporting, "
                           "with a test of whether groups differ.",
    "mechanism_markets": "Which markets support opened: new EU and non-EU destinations and their number.",
    "mechanism_value": "How much more firms exported in euros (a proportional effect), and how much of it came from "
                       "firms starting to export.",
    "mechanism_bundles": "What starting with two services together did, as its own kind of support.",
    "mechanism_sequences": "What adding a second service did for firms that had started with another one.",
    "mechanism_persistence": "Whether exporting lasted: sustained exporting and survival of new export spells.",
    "impact_report": "The impact report the agency publishes (HTML and PDF), with the estimate files, after "
                     "statistical disclosure control.",
}
#: Kinds beside those a stage module declares (the UI shows them as icons on the graph).
KINDS = {**{f"raw_{s}": {"csv", "excel"} for s in SOURCES}, "data_quality": {"json"},
         "panel_account": {"pickle"}, "evaluation_diagnostics": {"pickle"}}


def catalogued(spec: dg.AssetSpec) -> dg.AssetSpec:
    """``spec`` with its owner, kinds and business description; ``KeyError`` for an asset not catalogued."""
    name = spec.key.to_user_string()
    description = BUSINESS[name] + (f"\n\n{spec.description}" if spec.description else "")
    return spec.replace_attributes(owners=[OWNERS[spec.group_name]], kinds={*spec.kinds, *KINDS.get(name, ())},
                                   description=description)
