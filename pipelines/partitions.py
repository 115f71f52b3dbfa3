"""One Dagster partition per delivery: every table, estimate and report belongs to exactly one."""

import dagster as dg

deliveries = dg.DynamicPartitionsDefinition(name="deliveries")
