"""Validating typed sources with Great Expectations: blocking structure, row-level quarantine.

The contract compiles into one GX expectation suite per source. Text is first typed under the
contract (parse failures become boolean "readable" columns that GX checks), then GX runs the
type, completeness, range, allowed-value, uniqueness and cross-source rules and returns the
position of every failing row. A row failing any rule is quarantined with its original
text; the rest flow on, typed. GX is imported lazily: reading and structure checks do not pay
its import cost.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.contracts.model import SOURCES, ColumnSpec, Contract, ContractError, RowReference
from analyses.contracts.parsing import parse_boolean, parse_date, parse_integer, parse_number, parse_string
from analyses.contracts.reading import LOCATION_COLUMNS, RawSource, location_text

ROW_RULE_GROUPS = (
    "types",
    "completeness",
    "ranges",
    "allowed_values",
    "uniqueness",
    "referential_integrity",
    "panel_years",
    "date_order",
)
"""Rule groups, one Dagster asset check each; their row failures are quarantined, not blocking."""

_TYPE_PHRASES = {
    "integer": "a whole number",
    "number": "a number",
    "date": "a date (YYYY-MM-DD or DD.MM.YYYY)",
    "boolean": "true/false, yes/no or 1/0",
}
_DUPLICATE_FLAG = "__exact_duplicate"
_POSITION = "__position"  # the row's position in the raw frame: unique even when rows come from several sheets


@dataclass
class CheckOutcome:
    """The outcome of one rule group on one source, ready to become a Dagster asset check."""

    source: str
    name: str
    passed: bool
    blocking: bool
    severity: str
    description: str
    observed: float | int
    threshold: float | int
    metadata: dict[str, str | int | float] = field(default_factory=dict)


@dataclass
class ValidationResult:
    """A source split into typed clean rows and quarantined original rows, with the reasons.

    ``rows_in`` is counted from the file as read (data lines, blank ones included), independently
    of the split, so :meth:`check_accounting` can catch a row that went missing on the way.
    """

    source: str
    contract: Contract
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    rule_counts: dict[str, int]
    checks: list[CheckOutcome]
    rows_in: int
    blank_lines_skipped: int
    warnings: list[str] = field(default_factory=list)
    file: str = ""
    failures: list[RuleFailure] = field(default_factory=list)
    #: out-of-core sources (customs transactions): ``clean`` is aggregated and the quarantined rows wait in a
    #: Parquet spool, so the delivered rows are counted here
    counted_clean: int | None = None
    counted_quarantined: int | None = None
    quarantine_spool: Path | None = None

    @property
    def rows_clean(self) -> int:
        return len(self.clean) if self.counted_clean is None else self.counted_clean

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine) if self.counted_quarantined is None else self.counted_quarantined

    @property
    def rows_with_data(self) -> int:
        """Delivered lines that held any value: the base of the quarantine share (blank lines cannot dilute it)."""
        return self.rows_in - self.blank_lines_skipped

    @property
    def quarantine_share(self) -> float:
        return self.rows_quarantined / self.rows_with_data if self.rows_with_data else 0.0

    def check_accounting(self) -> None:
        """Raise if some delivered line ended neither clean, nor quarantined, nor skipped as blank."""
        accounted = self.rows_clean + self.rows_quarantined + self.blank_lines_skipped
        if accounted != self.rows_in:
            raise RuntimeError(
                f"{self.file or self.source}: row accounting does not add up: {self.rows_in} rows delivered, "
                f"but {self.rows_clean} clean + {self.rows_quarantined} quarantined + "
                f"{self.blank_lines_skipped} blank lines skipped = {accounted}"
            )


@dataclass(frozen=True)
class RuleFailure:
    """A rule that quarantined rows: its text, columns, row count and the first offending value.

    ``referenced_source`` names the source a referential rule looks up (to explain cascades).
    """

    rule_id: str
    group: str
    rule: str
    columns: tuple[str, ...]
    rows: int
    example_value: str
    example_row: int
    referenced_source: str | None = None
    example_sheet: str | None = None
    example_file: str | None = None

    @property
    def example_location(self) -> str:
        """``row 7``, ``sheet '2019' row 7`` for a workbook, ``file 'part-1.parquet' row 7`` in a folder."""
        if self.example_file is not None:
            return f"file {self.example_file!r} row {self.example_row}"
        return location_text(self.example_sheet, self.example_row)


@dataclass(frozen=True)
class _Rule:
    """One row rule: where it comes from, how it reads to a person and which GX expectation runs it."""

    id: str
    group: str
    columns: tuple[str, ...]
    text: str
    expectation: str
    arguments: dict
    referenced_source: str | None = None


@dataclass
class _Typed:
    """A source's text typed under its contract: values, unreadable and undecided cells, header mapping.

    ``undecided`` marks number cells readable two ways in a column whose number format its values
    do not decide; ``warnings`` say what typing changed (zero-padded codes).
    """

    values: dict[str, pd.Series]
    unreadable: dict[str, pd.Series]
    undecided: dict[str, pd.Series]
    header_of: dict[str, str]
    warnings: list[str]


def row_rule_groups(contract: Contract) -> list[str]:
    """Names of the asset checks a source gets after validation (row rule groups + quarantine share)."""
    groups = {rule.group for rule in _row_rules(contract, None)}
    return [group for group in ROW_RULE_GROUPS if group in groups] + ["quarantine_share"]


def check_structure(raw: RawSource, contract: Contract) -> CheckOutcome:
    """Blocking check: required columns present, at least one data row, no column wrong-typed throughout.

    A staged customs-transactions source brings its own problems (found in DuckDB while staging)
    and contract.
    """
    problems = _structure_problems(raw, contract)
    contract = getattr(raw, "contract", contract)
    found = raw.data_columns
    if problems:
        description = " | ".join(str(problem) for problem in problems)
    else:
        description = (
            f"{raw.path.name}: readable ({raw.format}), {raw.rows_delivered - raw.blank_lines_skipped} data rows, "
            f"all {len(contract.columns)} contract columns present and typed"
        )
    return CheckOutcome(
        source=raw.source,
        name="structure",
        passed=not problems,
        blocking=True,
        severity="ERROR",
        description=description,
        observed=len(problems),
        threshold=0,
        metadata={
            "rule": "file readable, not empty, every contract column present, no column wrong-typed throughout",
            "file": raw.path.name,
            "rows": raw.rows_delivered - raw.blank_lines_skipped,
            "columns_found": ", ".join(found),
            "columns_expected": ", ".join(contract.column_names),
            "contract": f"{contract.id} v{contract.version}",
        },
    )


def validate_sources(raws: dict[str, RawSource], contracts: dict[str, Contract]) -> dict[str, ValidationResult]:
    """Validate all four sources in dependency order; cross-source rules use the *clean* references.

    Raises :class:`ContractError` for the first structural failure (nothing is validated then).
    """
    missing = [source for source in SOURCES if source not in raws or source not in contracts]
    if missing:
        raise ContractError("file present", f"no delivery for {', '.join(missing)}; all of {', '.join(SOURCES)} are needed")
    for source in SOURCES:
        problems = _structure_problems(raws[source], contracts[source])
        if problems:
            raise problems[0]
    runner = GXRunner()
    results: dict[str, ValidationResult] = {}
    for source in SOURCES:
        references = {name: result.clean for name, result in results.items()}
        if isinstance(raws[source], RawSource):
            results[source] = validate_source(raws[source], contracts[source], references, runner)
        else:  # a staged customs-transactions delivery: validated and aggregated in DuckDB
            from analyses.contracts.transactions import validate_transactions

            results[source] = validate_transactions(raws[source], references)
    return results


def validate_source(
    raw: RawSource,
    contract: Contract,
    references: dict[str, pd.DataFrame],
    runner: GXRunner | None = None,
) -> ValidationResult:
    """Validate one structurally sound source; ``references`` maps source name to its clean table."""
    typed = _typed(raw, contract)
    rules = _row_rules(contract, references, raw.delivery_year)
    frame = _validation_frame(raw, contract, typed, references)
    failing = (runner or GXRunner()).failing_rows(contract.source, frame, rules)
    masks = {}
    for rule in rules:
        masks[rule.id] = np.zeros(len(raw.frame), dtype=bool)
        masks[rule.id][failing[rule.id]] = True
    quarantined = np.zeros(len(raw.frame), dtype=bool)
    for mask in masks.values():
        quarantined |= mask
    quarantine = raw.frame.loc[quarantined].copy()
    quarantine["quarantine_reason"] = _reasons(rules, masks, quarantined)
    clean = _clean_frame(raw, contract, typed, ~quarantined)
    failures = [_failure(raw, typed, rule, masks[rule.id]) for rule in rules if masks[rule.id].any()]
    rule_counts = {rule.id: int(masks[rule.id].sum()) for rule in rules}
    result = ValidationResult(
        source=contract.source,
        contract=contract,
        clean=clean,
        quarantine=quarantine.reset_index(drop=True),
        rule_counts=rule_counts,
        checks=[],
        rows_in=raw.rows_delivered,
        blank_lines_skipped=raw.blank_lines_skipped,
        warnings=list(raw.warnings) + _header_warnings(typed) + typed.warnings,
        file=raw.path.name,
        failures=failures,
    )
    result.checks = [
        *(_group_outcome(contract, group, rules, rule_counts, _rows_failing(group, rules, masks), failures)
          for group in row_rule_groups(contract)[:-1]),
        _share_outcome(result),
    ]
    result.check_accounting()
    return result


class GXRunner:
    """One ephemeral GX context (analytics and progress bars off) reused for every suite of a run."""

    @cached_property
    def _gx(self):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx

        return gx

    @cached_property
    def _datasource(self):
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = self._gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        return context.data_sources.add_pandas("landing")

    def failing_rows(self, name: str, frame: pd.DataFrame, rules: list[_Rule]) -> dict[str, np.ndarray]:
        """Run the rules as one GX suite on ``frame``; return the failing rows' positions (``__position``) per rule id."""
        gx, datasource = self._gx, self._datasource  # the context must exist before a suite is built
        from great_expectations.expectations.row_conditions import Column

        suite = gx.ExpectationSuite(name=f"{name}_contract")
        for rule in rules:
            arguments = dict(rule.arguments)
            if "row_condition" in arguments:
                flag, wanted = arguments.pop("row_condition")
                arguments["row_condition"] = Column(flag) == wanted
            suite.add_expectation(getattr(gx.expectations, rule.expectation)(**arguments, meta={"rule_id": rule.id}))
        asset = datasource.add_dataframe_asset(f"{name}_{len(datasource.assets)}")
        batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [_POSITION],
                "return_unexpected_index_query": False,
            },
        )
        failing: dict[str, np.ndarray] = {}
        for result in outcome.results:
            rule_id = result.expectation_config.meta["rule_id"]
            if result.exception_info and result.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX could not evaluate rule {rule_id}: {result.exception_info['exception_message']}")
            rows = result.result.get("unexpected_index_list") or []
            failing[rule_id] = np.fromiter((row[_POSITION] for row in rows), dtype="int64", count=len(rows))
        return failing


def _typed(raw: RawSource, contract: Contract) -> _Typed:
    """Parse every contract column once per raw source (structure check and validation share it)."""
    key = (contract.id, contract.version)
    if key not in raw.parse_cache:
        header_of = _header_mapping(raw, contract)
        values, unreadable, undecided, warnings = {}, {}, {}, []
        for column in contract.columns:
            if column.name in header_of:
                text = raw.frame[header_of[column.name]]
                parsed = _parse(text, column, raw.native_numbers.get(header_of[column.name]))
                values[column.name], unreadable[column.name], undecided[column.name] = parsed
                if column.zero_pad:
                    warnings += _padding_warning(raw, column, text, parsed[0])
        raw.parse_cache[key] = _Typed(values, unreadable, undecided, header_of, warnings)
    return raw.parse_cache[key]


def _parse(text: pd.Series, column: ColumnSpec, native: np.ndarray | None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Values, unreadable cells and undecided number cells (all False for non-numbers)."""
    if column.logical_type == "integer":
        return parse_integer(text, native)
    if column.logical_type == "number":
        return parse_number(text, native)
    if column.logical_type == "date":
        values, unreadable = parse_date(text)
    elif column.logical_type == "boolean":
        values, unreadable = parse_boolean(text)
    else:
        values, unreadable = parse_string(text, column.normalise, column.zero_pad)
    return values, unreadable, pd.Series(False, index=text.index)


def _padding_warning(raw: RawSource, column: ColumnSpec, text: pd.Series, values: pd.Series) -> list[str]:
    """Say how many codes got their leading zeros back, with the first one, so nothing changes unseen."""
    padded = (values.notna() & values.ne(text.str.strip())).to_numpy()
    if not padded.any():
        return []
    first = int(np.argmax(padded))
    return [
        f"{column.name}: {int(padded.sum())} value(s) without leading zeros (e.g. {text.iloc[first]!r} in "
        f"{raw.location(first)}) read as {values.iloc[first]} (zero-padded to {column.zero_pad} digits, as the contract says)"
    ]


def _header_mapping(raw: RawSource, contract: Contract) -> dict[str, str]:
    """Contract column -> file header, matching letter case and surrounding spaces loosely.

    The reader already refused headers that collide this way, so each key names one column.
    """
    by_key = {header.strip().lower(): header for header in raw.data_columns}
    return {name: by_key[name.lower()] for name in contract.column_names if name.lower() in by_key}


def _header_warnings(typed: _Typed) -> list[str]:
    renamed = [f"{header!r} read as {name}" for name, header in typed.header_of.items() if header != name]
    return [f"column names differ from the contract only in letter case/spaces: {', '.join(renamed)}"] if renamed else []


def _structure_problems(raw: RawSource, contract: Contract) -> list[ContractError]:
    if not isinstance(raw, RawSource):  # staged customs transactions: checked in DuckDB while staging
        return list(raw.problems)
    name = raw.path.name
    found = raw.data_columns
    typed = _typed(raw, contract)
    problems = []
    missing = [column for column in contract.column_names if column not in typed.header_of]
    if missing:
        hints = []
        for column in missing:
            close = difflib.get_close_matches(column.lower(), [header.lower() for header in found], n=1, cutoff=0.6)
            if close:
                hints.append(f"{close[0]!r} instead of {column}?")
        problems.append(
            ContractError(
                "required columns",
                f"missing {', '.join(missing)}; found columns {', '.join(found) or '(none)'}; "
                f"expected {', '.join(contract.column_names)}" + (f" (did you mean {'; '.join(hints)})" if hints else ""),
                file=name, column=missing[0],
            )
        )
    if raw.frame.empty:
        problems.append(ContractError("not empty", "header only: found column names but no data rows; expected at least one data row", file=name))
    for column in contract.columns:
        if column.name not in typed.values or column.logical_type == "string":
            continue
        text = raw.frame[typed.header_of[column.name]]
        given = int(text.str.strip().ne("").sum())
        bad = typed.unreadable[column.name]
        if given and int(bad.sum()) == given:
            first = int(np.argmax(bad.to_numpy()))
            problems.append(
                ContractError(
                    "column type",
                    f"none of the {given} values can be read as {_TYPE_PHRASES[column.logical_type]} "
                    f"(e.g. {text.iloc[first]!r} in {raw.location(first)}); "
                    f"expected {_TYPE_PHRASES[column.logical_type]}",
                    file=name, column=column.name,
                )
            )
    return problems


def _reference_values(references: dict[str, pd.DataFrame] | None, target: str, contract: Contract) -> pd.Series:
    """The clean values of ``source.column`` named by a relationship (empty when only compiling)."""
    source, column = target.split(".", 1)
    if references is None:
        return pd.Series([], dtype=object)
    return _reference_table(references, source, contract)[column]


def _reference_table(references: dict[str, pd.DataFrame], source: str, contract: Contract) -> pd.DataFrame:
    """The clean table a relationship points to; a contract naming a later source is a configuration error."""
    if source not in references:
        raise ContractError(
            "contract order", f"{contract.source} needs the clean {source} table; validate {source} first",
            file=contract.path.name if contract.path else None,
        )
    return references[source]


def _reference_codes(contract: Contract, reference: str) -> list[str]:
    """The codes of a reference list named ``<file>#<column>`` beside the contract (countries, NUTS-2 regions)."""
    file_name, column = reference.split("#", 1)
    table = pd.read_csv(contract.path.parent / file_name, dtype=str, keep_default_na=False)
    return sorted(table[column])


def _range_text(column: ColumnSpec, maximum: float | None, delivery_year: int | None) -> str:
    if maximum is None:
        text = f"{column.name} must be >= {column.minimum:g}"
    elif column.minimum is None:
        text = f"{column.name} must be <= {maximum:g}"
    else:
        text = f"{column.name} must be between {column.minimum:g} and {maximum:g}"
    if maximum is not None and maximum == delivery_year:
        text += f" ({delivery_year} = delivery year: the year the file was last modified)"
    return text


def _row_rules(
    contract: Contract, references: dict[str, pd.DataFrame] | None, delivery_year: int | None = None
) -> list[_Rule]:
    """Compile a contract and the clean reference tables into row rules, in reporting order.

    ``references=None`` only compiles the rule list (for naming checks), without reference values.
    ``delivery_year`` bounds the columns declared ``notAfterDeliveryYear`` (none: their maximum alone).
    """
    rules: list[_Rule] = []
    for column in contract.columns:
        name = column.name
        if column.logical_type != "string":
            phrase = _TYPE_PHRASES[column.logical_type]
            rules.append(_Rule(f"types.{name}", "types", (name,), f"{name} must be {phrase}",
                               "ExpectColumnValuesToBeInSet", {"column": f"{name}__readable", "value_set": [True]}))
        if column.logical_type in ("number", "integer"):
            rules.append(_Rule(f"types.{name}.number_format", "types", (name,),
                               f"{name}: '.' or ',' followed by exactly three digits (e.g. 48.200) could be a decimal or a "
                               "thousands separator and no other value in the column shows which (write it without "
                               "thousands separators, or with its decimals)",
                               "ExpectColumnValuesToBeInSet", {"column": f"{name}__decided", "value_set": [True]}))
    for column in contract.columns:
        if column.required:
            condition = {"row_condition": (f"{column.name}__typed", True)} if column.logical_type != "string" else {}
            rules.append(_Rule(f"completeness.{column.name}", "completeness", (column.name,), f"{column.name} must not be empty",
                               "ExpectColumnValuesToNotBeNull", {"column": column.name, **condition}))
    for column in contract.columns:
        maximum = column.maximum
        if column.not_after_delivery_year and delivery_year is not None:
            maximum = delivery_year if maximum is None else min(maximum, delivery_year)
        if column.minimum is not None or maximum is not None:
            rules.append(_Rule(f"ranges.{column.name}", "ranges", (column.name,), _range_text(column, maximum, delivery_year),
                               "ExpectColumnValuesToBeBetween",
                               {"column": column.name, "min_value": column.minimum, "max_value": maximum}))
    for column in contract.columns:
        if column.pattern:
            examples = f" (e.g. {', '.join(column.examples)})" if column.examples else ""
            rules.append(_Rule(f"allowed_values.{column.name}", "allowed_values", (column.name,),
                               f"{column.name} must match the pattern {column.pattern}{examples}",
                               "ExpectColumnValuesToMatchRegex", {"column": column.name, "regex": column.pattern}))
        if column.valid_values:
            rules.append(_Rule(f"allowed_values.{column.name}", "allowed_values", (column.name,),
                               f"{column.name} must be one of {', '.join(column.valid_values)}",
                               "ExpectColumnValuesToBeInSet", {"column": column.name, "value_set": list(column.valid_values)}))
        if column.valid_values_source:
            file_name = column.valid_values_source.split("#")[0]
            examples = f" (e.g. {', '.join(column.examples)})" if column.examples else ""
            rules.append(_Rule(f"allowed_values.{column.name}", "allowed_values", (column.name,),
                               f"{column.name} must be a code listed in {file_name}{examples}",
                               "ExpectColumnValuesToBeInSet",
                               {"column": column.name, "value_set": _reference_codes(contract, column.valid_values_source)}))
    not_duplicate = {"row_condition": (_DUPLICATE_FLAG, False)} if contract.no_exact_duplicates else {}
    if contract.no_exact_duplicates:
        rules.append(_Rule("uniqueness.exact_duplicate_row", "uniqueness", (), "row is an exact duplicate of an earlier row",
                           "ExpectColumnValuesToBeInSet", {"column": _DUPLICATE_FLAG, "value_set": [False]}))
    for column in contract.columns:
        if column.unique:
            rules.append(_Rule(f"uniqueness.{column.name}", "uniqueness", (column.name,),
                               f"{column.name} must be unique (the value appears in more than one row)",
                               "ExpectColumnValuesToBeUnique", {"column": column.name, **not_duplicate}))
    for combination in contract.unique_combinations:
        rules.append(_Rule(f"uniqueness.{'+'.join(combination)}", "uniqueness", combination,
                           f"only one row allowed per {' and '.join(combination)}",
                           "ExpectCompoundColumnsToBeUnique", {"column_list": list(combination), **not_duplicate}))
    for column in contract.columns:
        if column.references:
            # GX serialises an expectation's arguments many times per run; a 10,000-id value_set made
            # that dominate (≈10 s per 100k rows), so membership is a pandas flag column that GX checks.
            referenced = column.references.split(".")[0]
            rules.append(_Rule(f"referential_integrity.{column.name}", "referential_integrity", (column.name,),
                               f"{column.name} not in {referenced}",
                               "ExpectColumnValuesToBeInSet", {"column": f"{column.name}__known", "value_set": [True]},
                               referenced))
    for reference in contract.row_references:
        rules.append(_Rule(f"referential_integrity.{reference.rule_name}", "referential_integrity", reference.columns,
                           reference.reason, "ExpectColumnValuesToBeInSet",
                           {"column": f"{reference.rule_name}__known", "value_set": [True]}, reference.source))
    for column in contract.columns:
        if column.within_panel_years_of:
            years = _reference_values(references, column.within_panel_years_of, contract)
            rules.append(_panel_rule(column, column.within_panel_years_of.split(".")[0], years))
    for later, earlier in contract.not_before:
        rules.append(_Rule(f"date_order.{later}", "date_order", (earlier, later), f"{later} must not be before {earlier}",
                           "ExpectColumnPairValuesAToBeGreaterThanB",
                           {"column_A": later, "column_B": earlier, "or_equal": True, "ignore_row_if": "either_value_is_missing"}))
    return rules


def _panel_rule(column: ColumnSpec, source: str, years: pd.Series) -> _Rule:
    """Years (or dates) must fall inside the calendar years present in the clean reference table."""
    rule_id = f"panel_years.{column.name}"
    if years.empty:
        return _Rule(rule_id, "panel_years", (column.name,), f"{column.name} outside the panel years of {source} (none are clean)",
                     "ExpectColumnValuesToBeNull", {"column": column.name})
    first, last = int(years.min()), int(years.max())
    text = f"{column.name} outside the panel years of {source} ({first}-{last})"
    if column.logical_type == "date":
        bounds = {"min_value": pd.Timestamp(first, 1, 1), "max_value": pd.Timestamp(last, 12, 31)}
    else:
        bounds = {"min_value": first, "max_value": last}
    return _Rule(rule_id, "panel_years", (column.name,), text, "ExpectColumnValuesToBeBetween", {"column": column.name, **bounds})


def _validation_frame(
    raw: RawSource, contract: Contract, typed: _Typed, references: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Typed values plus flags GX checks: ``<col>__readable``, ``<col>__decided`` (number format),
    ``<col>__typed`` (both), ``<col>__known`` (in the reference), exact duplicate.

    Row references (several columns at once) get a ``<col>+<col>__known`` flag the same way.
    ``__position`` identifies each row of ``raw.frame`` in GX's answer.
    """
    columns: dict[str, object] = {_POSITION: np.arange(len(raw.frame), dtype="int64")}
    for name, values in typed.values.items():
        columns[name] = values.to_numpy()
        column = contract.column(name)
        if column.logical_type != "string":
            readable, decided = ~typed.unreadable[name].to_numpy(), ~typed.undecided[name].to_numpy()
            columns[f"{name}__readable"] = readable
            columns[f"{name}__typed"] = readable & decided
            if column.logical_type in ("number", "integer"):
                columns[f"{name}__decided"] = decided
        if column.references:
            known = _reference_values(references, column.references, contract)
            columns[f"{name}__known"] = (values.isna() | values.isin(known)).to_numpy()
    for reference in contract.row_references:
        clean = _reference_table(references, reference.source, contract)
        columns[f"{reference.rule_name}__known"] = _known_rows(typed, reference, clean)
    if contract.no_exact_duplicates:
        # the same row on two sheets is delivered twice as much as twice on one sheet
        columns[_DUPLICATE_FLAG] = raw.frame.duplicated(subset=raw.data_columns, keep="first").to_numpy()
    return pd.DataFrame(columns)


def _known_rows(typed: _Typed, reference: RowReference, clean: pd.DataFrame) -> np.ndarray:
    """Whether each row's key columns match a clean reference row; rows with an empty key part pass (completeness judges them)."""
    keys = pd.DataFrame({column: typed.values[column].to_numpy() for column in reference.columns})
    existing = clean[list(reference.reference_columns)].drop_duplicates()
    existing.columns = list(reference.columns)
    # parsed integers are float64 while clean tables hold int64: compare on the parsed dtypes
    existing = existing.astype(keys.dtypes.to_dict()).assign(__found=True)
    found = keys.merge(existing, on=list(reference.columns), how="left", sort=False)["__found"].notna().to_numpy()
    return keys.isna().any(axis=1).to_numpy() | found


def _reasons(rules: list[_Rule], masks: dict[str, np.ndarray], quarantined: np.ndarray) -> list[str]:
    """``"group: rule text; group: rule text"`` for every quarantined row, in rule order."""
    parts: list[list[str]] = [[] for _ in range(int(quarantined.sum()))]
    positions = np.cumsum(quarantined) - 1
    for rule in rules:
        for position in positions[masks[rule.id]]:
            parts[position].append(f"{rule.group}: {rule.text}")
    return ["; ".join(reasons) for reasons in parts]


def _clean_frame(raw: RawSource, contract: Contract, typed: _Typed, keep: np.ndarray) -> pd.DataFrame:
    """Typed contract columns (dtypes the panel builder relies on), extra columns as text, then the row's location."""
    clean = {}
    for column in contract.columns:
        values = typed.values[column.name][keep]
        if column.logical_type == "integer":
            values = values.astype("int64") if column.required else values.astype("Int64")
        elif column.logical_type == "boolean":
            values = values.astype(bool) if column.required else values.astype("boolean")
        elif column.logical_type == "date":
            values = values.astype("datetime64[ns]")
        elif column.logical_type == "number":
            values = values.astype("float64")
        else:
            values = values.astype(object)
        clean[column.name] = values.to_numpy()
    mapped = set(typed.header_of.values())
    for header in raw.data_columns:
        if header not in mapped:
            clean[header] = raw.frame[header].to_numpy()[keep]
    for header in LOCATION_COLUMNS:
        if header in raw.frame.columns:
            clean[header] = raw.frame[header].to_numpy()[keep]
    frame = pd.DataFrame(clean)
    frame.attrs["contract_id"] = contract.id
    frame.attrs["contract_version"] = contract.version
    return frame


def _failure(raw: RawSource, typed: _Typed, rule: _Rule, mask: np.ndarray) -> RuleFailure:
    """Summarise a rule's failures with the original text of its first failing row."""
    position = int(np.argmax(mask))
    row = raw.frame.iloc[position]
    headers = [typed.header_of[column] for column in rule.columns] or raw.data_columns
    value = row[headers[0]] if len(headers) == 1 else ", ".join(f"{header}={row[header]}" for header in headers)
    return RuleFailure(
        rule.id, rule.group, rule.text, rule.columns, int(mask.sum()), str(value), int(row["source_row"]), rule.referenced_source,
        row.get("source_sheet"),
    )


def _rows_failing(group: str, rules: list[_Rule], masks: dict[str, np.ndarray]) -> int:
    """Rows failing at least one rule of ``group``."""
    failing = np.zeros(len(next(iter(masks.values()))), dtype=bool)
    for rule in rules:
        if rule.group == group:
            failing |= masks[rule.id]
    return int(failing.sum())


def _group_outcome(
    contract: Contract, group: str, rules: list[_Rule], rule_counts: dict[str, int], observed: int,
    failures: list[RuleFailure], source: str | None = None,
) -> CheckOutcome:
    """One asset check per rule group (``observed`` rows fail one of its rules): failing rows are
    quarantined, so it warns and never blocks. ``source`` when the contract is another form's."""
    source = source or contract.source
    group_rules = [rule for rule in rules if rule.group == group]
    metadata: dict[str, str | int | float] = {
        "rule": "; ".join(rule.text for rule in group_rules),
        "contract": f"{contract.id} v{contract.version}",
        "quarantine_file": f"quarantine/{source}.csv",
    }
    for rule in group_rules:
        metadata[f"rows_failing {rule.id}"] = int(rule_counts[rule.id])
    broken = [failure for failure in failures if failure.group == group]
    if broken:
        metadata.update(
            {"example_value": broken[0].example_value, "example_row": broken[0].example_row, "example_rule": broken[0].rule}
        )
        if broken[0].example_sheet is not None:
            metadata["example_sheet"] = broken[0].example_sheet
        if broken[0].example_file is not None:
            metadata["example_file"] = broken[0].example_file
        description = (
            f"{observed} row(s) quarantined: "
            + "; ".join(f"{failure.rows} with {failure.rule}" for failure in broken)
            + f" (e.g. {broken[0].example_value!r} in {broken[0].example_location}); threshold 0"
        )
    else:
        description = f"no rows break the {group.replace('_', ' ')} rules ({metadata['rule']}); threshold 0"
    return CheckOutcome(
        source=source, name=group, passed=observed == 0, blocking=False, severity="WARN",
        description=description, observed=observed, threshold=0, metadata=metadata,
    )


def _share_outcome(result: ValidationResult) -> CheckOutcome:
    """Quarantine share against the contract's threshold: warns below it, fails and blocks above it."""
    share = result.quarantine_share
    threshold = result.contract.quarantine_threshold
    too_many = share > threshold
    description = (
        f"{result.rows_quarantined} of {result.rows_with_data} rows quarantined ({share:.1%}); "
        f"threshold {threshold:.1%}" + (" — too many, nothing downstream uses this source" if too_many else "")
    )
    return CheckOutcome(
        source=result.source, name="quarantine_share", passed=result.rows_quarantined == 0,
        blocking=too_many, severity="ERROR" if too_many else "WARN", description=description,
        observed=round(share, 6), threshold=threshold,
        metadata={
            "rule": f"share of quarantined rows must not exceed {threshold:.1%}",
            "rows_in": result.rows_in, "rows_clean": result.rows_clean, "rows_quarantined": result.rows_quarantined,
            "blank_lines_skipped": result.blank_lines_skipped,
            "quarantine_file": f"quarantine/{result.source}.csv",
        },
    )
