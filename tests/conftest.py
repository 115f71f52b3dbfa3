"""Shared fixtures: small generated agency data and one materialisation of the whole graph."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

#: Small enough for a quick test run, large enough for every cohort to clear the size threshold.
TEST_FIRMS = 3_000
TEST_SEED = 20240601


@pytest.fixture(scope="session")
def demo_landing(tmp_path_factory) -> Path:
    from analyses.demo_data import write_demo_data

    landing = tmp_path_factory.mktemp("landing")
    write_demo_data(landing, n_firms=TEST_FIRMS, seed=TEST_SEED)
    return landing


def pipeline_resources(landing: Path, output: Path, plan_file: str = "") -> dict:
    """The production resources, pointed at test folders."""
    import dagster as dg
    from dagster_duckdb_pandas import DuckDBPandasIOManager

    from pipelines.resources import EvaluationPlanResource, LandingDirectory, OutputDirectory

    return {
        "landing": LandingDirectory(path=str(landing)),
        "output_dir": OutputDirectory(path=str(output)),
        "plan": EvaluationPlanResource(plan_file=plan_file),
        "io_manager": DuckDBPandasIOManager(database=str(output / "warehouse.duckdb"), schema="export_impact"),
        "object_io_manager": dg.FilesystemIOManager(base_dir=str(output / "objects")),
    }


@pytest.fixture(scope="session")
def materialised_pipeline(demo_landing, tmp_path_factory):
    """Materialise every asset once on the demo data; tests inspect the result and the outputs."""
    import dagster as dg

    from pipelines.definitions import ALL_ASSETS

    output = tmp_path_factory.mktemp("output")
    plan_file = output / "plan.yaml"
    plan_file.write_text("bootstrap_iterations: 299\n", encoding="utf-8")
    result = dg.materialize(
        ALL_ASSETS,
        resources=pipeline_resources(demo_landing, output, str(plan_file)),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, output
