"""Lance pair datasets: the schema, writing and reading rows."""

from geobind.data.pairs import (
    BASE_COLUMNS,
    SPLITS,
    open_pairs,
    pair_schema,
    read_values,
    write_pairs,
)

__all__ = ["BASE_COLUMNS", "SPLITS", "open_pairs", "pair_schema", "read_values", "write_pairs"]
