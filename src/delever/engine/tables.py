"""Column-chunk accumulator for the engine's output tables (no Python object per row)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class TableBuilder:
    """Collects rows as column chunks; scalars are broadcast to the chunk length.

    Args:
        schema: Column name -> NumPy dtype (``str`` for dictionary-encoded strings).
    """

    def __init__(self, schema: dict[str, object]) -> None:
        self.schema = schema
        self._cols: dict[str, list[np.ndarray]] = {k: [] for k in schema}

    def add(self, **cols) -> None:
        """Append a chunk; array columns set its length, scalar columns are repeated."""
        n = max((np.size(v) for v in cols.values() if np.ndim(v) > 0), default=1)
        if n == 0:
            return
        missing = set(self.schema) - set(cols)
        if missing:
            raise KeyError(f"missing columns {sorted(missing)}")
        for k, dtype in self.schema.items():
            v = cols[k]
            if dtype is str:
                arr = np.asarray(v, dtype=object)
                arr = np.full(n, v, dtype=object) if arr.ndim == 0 else arr
            else:
                arr = np.asarray(v, dtype=dtype)
                arr = np.full(n, arr, dtype=dtype) if arr.ndim == 0 else arr
            self._cols[k].append(arr)

    def column(self, name: str) -> np.ndarray:
        """One numeric column as a NumPy array (all chunks so far)."""
        chunks = self._cols[name]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=self.schema[name])

    def to_table(self) -> pa.Table:
        out = {}
        for k, dtype in self.schema.items():
            chunks = self._cols[k]
            if dtype is str:
                vals = np.concatenate(chunks).tolist() if chunks else []
                out[k] = pa.array(vals, pa.string()).dictionary_encode()
            else:
                out[k] = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
        return pa.table(out)
