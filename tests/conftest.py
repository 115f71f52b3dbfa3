"""Shared fixtures: small generated agency data and one materialisation of the whole graph."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

#: Small enough for a quick test run, large enough for every cohort to clear the size threshold.
TEST_FIRMS = 3_000
TEST_SEED = 20240601
TEST_PSEUDONYM_KEY = "test-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def demo_landing(tmp_path_factory) -> Path:
    from analyses.demo_data import write_demo_data

    landing = tmp_path_factory.mktemp("landing")
    write_demo_data(landing, n_firms=TEST_FIRMS, seed=TEST_SEED)
    return landing


def pipeline_resources(landing: Path, root: Path, plan_file: str = "") -> dict:
    """The production resources, pointed at ``root/output`` and the restricted ``root/warehouse``."""
    import dagster as dg

    from pipelines.resources import (
        EvaluationPlanResource,
        LandingDirectory,
        OutputDirectory,
        ParquetWarehouse,
        PseudonymKey,
        WarehouseDirectory,
    )

    return {
        "landing": LandingDirectory(path=str(landing)),
        "output_dir": OutputDirectory(path=str(root / "output")),
        "warehouse": WarehouseDirectory(path=str(root / "warehouse")),
        "plan": EvaluationPlanResource(plan_file=plan_file),
        # one fixed key for every test run, so that pseudonyms (and the firm order they give) are reproducible
        "pseudonyms": PseudonymKey(key=TEST_PSEUDONYM_KEY, vault_dir=str(root / "vault")),
        "io_manager": ParquetWarehouse(base_dir=str(root / "warehouse" / "tables")),
        "object_io_manager": dg.FilesystemIOManager(base_dir=str(root / "warehouse" / "objects")),
    }


def materialise_delivery(landing: Path, root: Path, plan_file: str = "", instance=None):
    """Register the delivery in ``landing`` and materialise every asset on its partition.

    Returns the Dagster result and the delivery's published folder ``root/output/<key>``.
    """
    import dagster as dg

    from analyses.deliveries import identify_delivery
    from pipelines.definitions import ALL_ASSETS
    from pipelines.partitions import deliveries

    resources = pipeline_resources(landing, root, plan_file)
    delivery = identify_delivery(landing)
    resources["warehouse"].deliveries.register(delivery)
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(deliveries.name, [delivery.key])
    result = dg.materialize(
        ALL_ASSETS, resources=resources, instance=instance, partition_key=delivery.key, raise_on_error=False
    )
    return result, root / "output" / delivery.key


@pytest.fixture(scope="session")
def materialised_pipeline(demo_landing, tmp_path_factory):
    """Materialise every asset once on the demo data; tests inspect the result and the published folder."""
    root = tmp_path_factory.mktemp("pipeline")
    plan_file = root / "plan.yaml"
    plan_file.write_text("bootstrap_iterations: 299\n", encoding="utf-8")
    return materialise_delivery(demo_landing, root, str(plan_file))
