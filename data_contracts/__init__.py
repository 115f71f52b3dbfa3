"""The data contracts (YAML, one per source) and reference lists; a package so that they ship with the code."""
