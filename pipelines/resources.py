"""Resources: where the agency's files land, where outputs go, where restricted data lives, which plan runs.

Each is configured from an environment variable through ``EnvVar`` when it is set, and falls
back to the embedded default (demo data, ``output/``, ``warehouse/``) when it is not, so that a
newcomer's ``make run`` needs no configuration while a deployment sets everything from its
environment.
"""

import os
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManagerFactory, ConfigurableResource, EnvVar, UPathIOManager
from upath import UPath

from analyses.deliveries import DeliveryRegistry
from analyses.publishing import ensure_restricted_apart, staging_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING_DIR = PROJECT_ROOT / "data" / "demo"
DEFAULT_OUTPUT_DIR = PROJECT_ROOT / "output"
#: Firm-level tables, quarantined rows, delivery manifests and run logs: never published.
DEFAULT_WAREHOUSE = PROJECT_ROOT / "warehouse"


def env_or_default(name: str, default: str) -> str | EnvVar:
    """Use ``EnvVar(name)`` when the variable is set so Dagster shows its origin; else the default."""
    return EnvVar(name) if os.environ.get(name) else default


def setting(name: str, default: Path) -> Path:
    """The folder an ``EXPORT_IMPACT_*`` variable names, absolute; the default when it is unset."""
    return Path(os.environ.get(name) or default).expanduser().resolve()


class LandingDirectory(ConfigurableResource):
    """The folder holding the agency's four extracts (firms, financials, participation, exports)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()


class _WrittenFolder(ConfigurableResource):
    """A folder the pipeline writes into: absolute, created on first use."""

    path: str

    @property
    def root(self) -> Path:
        root = Path(self.path).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root


class WarehouseDirectory(_WrittenFolder):
    """The restricted folder: firm-level tables, quarantine files, delivery manifests, run logs.

    Confidential: it must never lie inside the output folder (checked where files are written).
    """

    @property
    def deliveries(self) -> DeliveryRegistry:
        """Manifests and quarantine files, one folder per delivery."""
        return DeliveryRegistry(self.root / "deliveries")


class OutputDirectory(_WrittenFolder):
    """The publishable folder: one sub-folder per delivery with its report, estimates and data quality."""

    def staging(self, run_id: str, warehouse: WarehouseDirectory) -> Path:
        """The run's staging folder, after refusing a warehouse that lies inside the output folder."""
        ensure_restricted_apart(self.root, warehouse.root)
        return staging_dir(self.root, run_id)


class EvaluationPlanResource(ConfigurableResource):
    """A pre-registered evaluation plan (YAML); empty means the built-in default plan."""

    plan_file: str = ""

    def load(self):
        """The plan as an ``analyses.evaluation.EvaluationPlan`` (imported here: it pulls in SciPy)."""
        from analyses.evaluation import EvaluationPlan

        return EvaluationPlan.from_yaml(self.plan_file) if self.plan_file else EvaluationPlan()


class PandasParquetIOManager(UPathIOManager):
    """One Parquet file per asset and delivery: ``<base>/<asset>/<delivery>.parquet``.

    A file per partition means a delivery with other columns never collides with an earlier
    one's table, and parallel steps of different deliveries never share a writer.
    """

    extension = ".parquet"

    def dump_to_path(self, context, obj: pd.DataFrame, path: UPath) -> None:
        partial = path.with_name(path.name + ".partial")
        obj.to_parquet(partial, index=False)
        partial.rename(path)

    def load_from_path(self, context, path: UPath) -> pd.DataFrame:
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: was its asset materialised for this delivery, and does this process (e.g. "
                "a Celery worker) use the same EXPORT_IMPACT_WAREHOUSE as the run?"
            )
        return pd.read_parquet(path)


class ParquetWarehouse(ConfigurableIOManagerFactory):
    """Tables of the warehouse as Parquet files under ``base_dir`` (a local folder or an fsspec URL)."""

    base_dir: str

    def create_io_manager(self, context) -> PandasParquetIOManager:
        return PandasParquetIOManager(base_path=UPath(self.base_dir))
