"""Metadata helpers shared by every stage, so the Dagster UI shows the same facts everywhere."""

import dagster as dg
import pandas as pd


def frame_metadata(frame: pd.DataFrame) -> dict:
    """Row count and column schema of a table, as the UI's asset page displays them."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in frame.dtypes.items()]
        ),
    }


def check_result(outcome, summary: str | None = None) -> dg.AssetCheckResult:
    """Translate a data-contract ``CheckOutcome`` into a Dagster asset check result.

    ``summary`` is the plain-language account of what was set aside, shown in the UI and printed
    by ``make run`` when the check blocks the run.
    """
    return dg.AssetCheckResult(
        check_name=outcome.name,
        asset_key=dg.AssetKey(f"{'raw' if outcome.name == 'structure' else 'clean'}_{outcome.source}"),
        passed=bool(outcome.passed),
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            "rule": outcome.description,
            "observed": outcome.observed,
            "threshold": outcome.threshold,
            **outcome.metadata,
            **({"summary": dg.MetadataValue.text(summary)} if summary else {}),
        },
    )


#: step priorities (Dagster's ``dagster/priority`` step tag: with steps waiting for a free process, the higher runs
#: first): the headline steps, then sensitivity and robustness, which wait for them, before the mechanism families,
#: which wait for nothing; otherwise the headline chain starts last and decides the run's length
HEADLINE_PRIORITY = {"dagster/priority": "2"}
AFTER_HEADLINE_PRIORITY = {"dagster/priority": "1"}
