"""Keyed pseudonyms for firm identifiers: HMAC-SHA256 under the agency's secret key.

A pseudonym is ``p`` followed by the first 24 hex digits (96 bits) of HMAC-SHA256(key, identifier),
the identifier trimmed of surrounding spaces as the contracts read it. The same key gives the same
pseudonym in every source and every delivery, so linking and the panel work unchanged; without the
key nobody can recompute them from a list of identifiers (a plain hash could be). The key lives in
the vault (``pseudonym.key``, or an environment variable); the warehouse keeps only a keyed
fingerprint of it (HMAC of a fixed label), so a run with another key is stopped before it writes
pseudonyms that would not match the firms already there. Pure Python (no Dagster).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

PREFIX = "p"
HEX_DIGITS = 24
KEY_FILE = "pseudonym.key"
FINGERPRINT_FILE = "pseudonym_key.json"
_FINGERPRINT_LABEL = b"export-impact pseudonym key fingerprint v1"
MIN_KEY_CHARACTERS = 16


class PseudonymKeyError(RuntimeError):
    """The key is missing, too short, or not the one the warehouse's pseudonyms were made with."""


class Pseudonymiser:
    """Turns identifiers into pseudonyms under one key (``key``: at least 16 characters)."""

    def __init__(self, key: str):
        if len(key.strip()) < MIN_KEY_CHARACTERS:
            raise PseudonymKeyError(
                f"the pseudonymisation key has {len(key.strip())} characters; at least {MIN_KEY_CHARACTERS} are needed "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        self._key = key.strip().encode("utf-8")

    def pseudonym(self, identifier: str) -> str:
        """``p`` + 24 hex digits for a non-empty identifier (surrounding spaces ignored)."""
        digest = hmac.new(self._key, identifier.strip().encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:HEX_DIGITS]

    def mapping(self, identifiers: Iterable[str]) -> dict[str, str]:
        """Identifier (as delivered) -> pseudonym, for the distinct non-blank identifiers."""
        return {value: self.pseudonym(value) for value in set(identifiers) if value is not None and str(value).strip()}

    def replace(self, text: pd.Series) -> tuple[pd.Series, dict[str, str]]:
        """``text`` with every non-blank cell replaced by its pseudonym (blank cells stay as delivered), and the
        mapping from the identifiers (trimmed) to their pseudonyms."""
        mapping = self.mapping(text.dropna().astype(str).unique())
        return text.map(lambda value: mapping.get(value, value)), {key.strip(): value for key, value in mapping.items()}

    @property
    def fingerprint(self) -> str:
        """HMAC of a fixed label: identifies the key without revealing it."""
        return hmac.new(self._key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def load_key(configured: str, vault: Path, warehouse: Path) -> tuple[str, str | None]:
    """The key to use and, when one had to be made, a sentence saying where it was written.

    ``configured`` (the environment variable) wins; else ``<vault>/pseudonym.key``; else, for a
    warehouse without pseudonyms yet, a new random key is written there (owner-readable only).
    """
    if configured.strip():
        return configured, None
    path = Path(vault) / KEY_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip(), None
    if (Path(warehouse) / FINGERPRINT_FILE).is_file():
        raise PseudonymKeyError(
            f"no pseudonymisation key: EXPORT_IMPACT_PSEUDONYM_KEY is not set and {path} does not exist, but the "
            f"warehouse {warehouse} holds pseudonyms made with a key; configure that key (a new one would not match them)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key, (
        f"no pseudonymisation key configured (EXPORT_IMPACT_PSEUDONYM_KEY): generated one in {path}; keep it "
        "(and back it up) - the warehouse's pseudonyms can only be matched again with the same key"
    )


def check_fingerprint(pseudonymiser: Pseudonymiser, warehouse: Path, key_origin: str) -> None:
    """Record the key's fingerprint in a new warehouse; stop when an existing warehouse has another one."""
    path = Path(warehouse) / FINGERPRINT_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{os.getpid()}.partial")
        partial.write_text(json.dumps({"hmac_sha256_fingerprint": pseudonymiser.fingerprint}), encoding="utf-8")
        partial.replace(path)
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))["hmac_sha256_fingerprint"]
    if not hmac.compare_digest(recorded, pseudonymiser.fingerprint):
        raise PseudonymKeyError(
            f"the pseudonymisation key ({key_origin}) is not the key this warehouse's pseudonyms were made with "
            f"(key fingerprint {pseudonymiser.fingerprint[:12]}… instead of {recorded[:12]}…, recorded in {path}): "
            "pseudonyms of known firms would not match. Configure the original key (EXPORT_IMPACT_PSEUDONYM_KEY or "
            "the vault's pseudonym.key), or use a new warehouse for the new key"
        )


def write_linkage(mapping: dict[str, str], path: Path) -> Path:
    """Write ``identifier,pseudonym`` rows (sorted, owner-readable only) to ``path`` in the vault."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(sorted(mapping.items()), columns=["firm_id", "pseudonym"])
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False, encoding="utf-8")
    os.chmod(partial, 0o600)
    partial.replace(path)
    return path
