"""Resources: where the agency's files land, where outputs go, where restricted data lives, which plan runs.

Each is configured from an environment variable through ``EnvVar`` when it is set, and falls
back to the embedded default (demo data, ``output/``, ``warehouse/``) when it is not, so that a
newcomer's ``make run`` needs no configuration while a deployment sets everything from its
environment.
"""

import os
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Optional

import pandas as pd
from dagster import ConfigurableIOManagerFactory, ConfigurableResource, EnvVar, UPathIOManager
from upath import UPath

from analyses.deliveries import DeliveryRegistry
from analyses.evaluation import EvaluationPlan, read_plan_file
from analyses.publishing import ensure_restricted_apart, staging_dir
from pipelines.plan_config import PlanConfig, merged

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
    """The pre-registered evaluation plan: a YAML file (empty: the built-in default plan), with any key
    set in run config (``specification``, the launchpad's or a schedule's) laid over it."""

    plan_file: str = ""
    specification: Optional[PlanConfig] = None

    def load(self):
        """The plan as an ``analyses.evaluation.EvaluationPlan``; ``ValueError`` names a bad key or value."""
        chosen = self.specification.model_dump(exclude_none=True) if self.specification else {}
        base = read_plan_file(self.plan_file) if self.plan_file else {}
        source = " with ".join([part for part in (self.plan_file, "run config" if chosen else "") if part]) or \
            "evaluation plan"
        return EvaluationPlan.from_mapping(merged(base, chosen), source=source)


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

    def table_path(self, asset: str, delivery: str) -> UPath:
        """Where ``asset``'s table of ``delivery`` is stored (exists only once materialised)."""
        return self._base_path / asset / f"{delivery}{self.extension}"


class ParquetWarehouse(ConfigurableIOManagerFactory):
    """Tables of the warehouse as Parquet files under ``base_dir`` (a local folder or an fsspec URL)."""

    base_dir: str

    def create_io_manager(self, context) -> PandasParquetIOManager:
        return PandasParquetIOManager(base_path=UPath(self.base_dir))


#: The vault: the pseudonymisation key and, when the plan asks, linkage tables. The only place
#: holding anything that leads back to firm identifiers; never inside the warehouse or the output.
DEFAULT_VAULT = PROJECT_ROOT / "vault"


class PseudonymKey(ConfigurableResource):
    """The secret key of the firm pseudonyms (``EXPORT_IMPACT_PSEUDONYM_KEY``) and the vault folder.

    Empty ``key``: the vault's ``pseudonym.key``, generated on first use (and said so).
    """

    key: str = ""
    vault_dir: str = str(DEFAULT_VAULT)

    @property
    def vault(self) -> Path:
        return Path(self.vault_dir).expanduser().resolve()

    def pseudonymiser(self, warehouse: WarehouseDirectory):
        """``(Pseudonymiser, note)``: the key checked against the warehouse's fingerprint; ``note`` says
        when a key was generated. Raises ``analyses.pseudonyms.PseudonymKeyError`` with a plain message."""
        from analyses.pseudonyms import PseudonymKeyError, Pseudonymiser, check_fingerprint, load_key

        vault, root = self.vault, warehouse.root
        if vault == root or root in vault.parents:
            raise PseudonymKeyError(f"the vault {vault} lies inside the warehouse {root}, which must hold pseudonyms only")
        key, note = load_key(self.key, vault, root)
        pseudonymiser = Pseudonymiser(key)
        origin = "EXPORT_IMPACT_PSEUDONYM_KEY" if self.key.strip() else str(vault / "pseudonym.key")
        check_fingerprint(pseudonymiser, root, origin)
        return pseudonymiser, note

    def linkage_path(self, delivery: str, source: str) -> Path:
        return self.vault / "linkage" / delivery / f"{source}.csv"


class SmtpNotifier(ConfigurableResource):
    """E-mails run incidents through a standard SMTP server; off unless a host and a recipient are set.

    Configured from ``EXPORT_IMPACT_SMTP_HOST``, ``EXPORT_IMPACT_SMTP_PORT`` (default 25),
    ``EXPORT_IMPACT_SMTP_FROM`` and ``EXPORT_IMPACT_SMTP_TO`` (comma-separated addresses). Plain SMTP
    as a relay inside the agency's network expects it: no login, no TLS.
    """

    host: str = ""
    port: int = 25
    from_address: str = "export-impact@localhost"
    to_addresses: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in self.to_addresses.split(",") if address.strip()]

    def send(self, subject: str, body: str) -> None:
        """Send one plain-text message; raises ``OSError``/``smtplib.SMTPException`` when the server refuses."""
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, self.from_address, ", ".join(self.recipients)
        message.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=30) as server:
            server.send_message(message)


def smtp_from_environment() -> SmtpNotifier:
    """The notifier configured by ``EXPORT_IMPACT_SMTP_*`` (through ``EnvVar``), or a switched-off one."""
    port = EnvVar.int("EXPORT_IMPACT_SMTP_PORT") if os.environ.get("EXPORT_IMPACT_SMTP_PORT") else 25
    return SmtpNotifier(
        host=env_or_default("EXPORT_IMPACT_SMTP_HOST", ""),
        port=port,
        from_address=env_or_default("EXPORT_IMPACT_SMTP_FROM", "export-impact@localhost"),
        to_addresses=env_or_default("EXPORT_IMPACT_SMTP_TO", ""),
    )
