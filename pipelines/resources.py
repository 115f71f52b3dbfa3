"""Resources: where the agency's files land, where outputs go, and which evaluation plan to run.

Each is configured from an environment variable through ``EnvVar`` when it is set, and falls
back to the embedded default (demo data, ``output/``) when it is not, so that a newcomer's
``make run`` needs no configuration while a deployment sets everything from its environment.
"""

import os
from pathlib import Path

from dagster import ConfigurableResource, EnvVar

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING_DIR = PROJECT_ROOT / "data" / "demo"
DEFAULT_OUTPUT_DIR = PROJECT_ROOT / "output"
#: Firm-level tables: kept apart from the publishable outputs so that sharing output/ is safe.
DEFAULT_WAREHOUSE = PROJECT_ROOT / "warehouse" / "warehouse.duckdb"  # named unlike its schema: DuckDB would clash


def env_or_default(name: str, default: str) -> str | EnvVar:
    """Use ``EnvVar(name)`` when the variable is set so Dagster shows its origin; else the default."""
    return EnvVar(name) if os.environ.get(name) else default


class LandingDirectory(ConfigurableResource):
    """The folder holding the agency's four extracts (firms, financials, participation, exports)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()


class OutputDirectory(ConfigurableResource):
    """The folder that receives the report, estimates, quarantine files and data-quality record."""

    path: str

    @property
    def root(self) -> Path:
        root = Path(self.path).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root


class EvaluationPlanResource(ConfigurableResource):
    """A pre-registered evaluation plan (YAML); empty means the built-in default plan."""

    plan_file: str = ""

    def load(self):
        """The plan as an ``analyses.evaluation.EvaluationPlan`` (imported here: it pulls in SciPy)."""
        from analyses.evaluation import EvaluationPlan

        return EvaluationPlan.from_yaml(self.plan_file) if self.plan_file else EvaluationPlan()
