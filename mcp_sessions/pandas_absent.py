"""Tells Python, once, that pandas is absent when it is; imported by every module that runs DuckDB queries.

DuckDB's binding tries `import pandas` for every query parameter (to recognise DataFrames); where pandas is
not installed each failed try searches sys.path again, ~120 µs per parameter, which was a third of a one-message
append. A None entry in sys.modules is Python's documented way to make that import fail at once; it changes
nothing where pandas exists, and where it does not every import of it fails either way.
"""

import importlib.util
import sys

if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
    sys.modules["pandas"] = None  # type: ignore[assignment]
