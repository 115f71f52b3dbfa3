"""Deliveries: one agency extract (the four landing files) as a named, content-addressed unit of work.

A delivery is identified by its folder's name and the SHA-256 of its files, so the same files
always get the same key and a changed file is a new delivery. The key is the Dagster partition of
every table built from the delivery; the manifest written when a delivery is registered records
where its files are and what they hashed to, so a run can prove it read exactly those files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from analyses.contracts.model import SOURCES
from analyses.contracts.reading import find_source_file

#: Dagster partition keys must avoid separators such as ``,`` ``|`` ``[`` ``]``; keep them readable.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SLUG = 40
_HASH_CHARS = 12


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks so large deliveries do not fill memory.

    A folder (a Parquet dataset) hashes the sorted ``name:sha256`` lines of its ``*.parquet`` files.
    """
    if Path(path).is_dir():
        parts = sorted(Path(path).glob("*.parquet"))
        return hashlib.sha256("\n".join(f"{p.name}:{file_sha256(p)}" for p in parts).encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DeliveryFile:
    """One landing file of a delivery: its name in the folder and its SHA-256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Delivery:
    """The four files of one extract.

    ``key`` is ``<folder name>-<first 12 hex digits of the content hash>``, e.g.
    ``2026-q3-1f0c9a7d22be``; ``sha256`` hashes the sorted ``source:name:sha256`` lines.
    """

    key: str
    folder: Path
    sha256: str
    files: dict[str, DeliveryFile]

    def path(self, source: str) -> Path:
        return self.folder / self.files[source].name

    def tags(self) -> dict[str, str]:
        """Run tags that tell, in the Dagster UI, which delivery a run used."""
        return {
            "export_impact/delivery": self.key,
            "export_impact/landing_dir": str(self.folder),
            "export_impact/delivery_sha256": self.sha256,
        }

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "folder": str(self.folder)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        data = json.loads(text)
        files = {source: DeliveryFile(**entry) for source, entry in data["files"].items()}
        return cls(key=data["key"], folder=Path(data["folder"]), sha256=data["sha256"], files=files)


def identify_delivery(folder: str | Path) -> Delivery:
    """Hash the four landing files in ``folder`` and name the delivery.

    Raises :class:`analyses.contracts.ContractError` when the folder or a source file is missing,
    or a source has more than one file.
    """
    folder = Path(folder).expanduser().resolve()
    files = {}
    for source in SOURCES:
        path = find_source_file(folder, source)
        files[source] = DeliveryFile(name=path.name, sha256=file_sha256(path))
    combined = hashlib.sha256(
        "\n".join(f"{s}:{f.name}:{f.sha256}" for s, f in sorted(files.items())).encode("utf-8")
    ).hexdigest()
    slug = _UNSAFE.sub("-", folder.name).strip("-.")[:_MAX_SLUG] or "delivery"
    return Delivery(key=f"{slug}-{combined[:_HASH_CHARS]}", folder=folder, sha256=combined, files=files)


class UnknownDelivery(LookupError):
    """A partition key with no registered manifest (the message says how to register one)."""

    def __str__(self) -> str:
        return str(self.args[0])


class DeliveryRegistry:
    """Registered deliveries in a restricted folder: ``<root>/<key>/manifest.json``.

    Each delivery's folder also receives its quarantine files. The manifest holds the landing
    folder's absolute path, so it lives beside the warehouse, never in the published output.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def register(self, delivery: Delivery) -> Path:
        """Write (or rewrite) the manifest; written aside and moved so readers never see half a file."""
        path = self.folder(delivery.key) / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(delivery.to_json(), encoding="utf-8")
        partial.replace(path)
        return path

    def folder(self, key: str) -> Path:
        """The delivery's restricted folder (manifest, ``quarantine/``)."""
        return self.root / key

    def get(self, key: str) -> Delivery:
        """The registered delivery ``key``; :class:`UnknownDelivery` when there is none."""
        path = self.folder(key) / "manifest.json"
        if not path.is_file():
            raise UnknownDelivery(
                f"delivery {key!r} is not registered in {self.root}: start it with `make run` or the landing "
                "sensor, which register a delivery before running it"
            )
        return Delivery.from_json(path.read_text(encoding="utf-8"))


def changed_since_registration(delivery: Delivery, source: str, sha256: str) -> str | None:
    """A sentence when the file read for ``source`` is not the file registered, else ``None``."""
    expected = delivery.files[source].sha256
    if sha256 == expected:
        return None
    return (
        f"{delivery.files[source].name} in {delivery.folder} changed after delivery {delivery.key} was registered "
        f"(SHA-256 {sha256[:12]}… instead of {expected[:12]}…); the changed files are a new delivery: "
        "run `make run` again or let the landing sensor pick them up"
    )
