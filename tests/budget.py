"""Hypothesis example budgets: the full count in the suite, a fifth under mutation testing.

``make mutation`` (``tests/mutation/run.py``) sets ``DRIFTLINE_MUTATION=1``: every mutant reruns the property
tests that reach its code, so a fifth of the examples keeps a run within reach of a 2-core machine. A score
measured so is a lower bound of what the full suite kills.

Example:
    >>> import os
    >>> examples(1000) == (200 if os.environ.get("DRIFTLINE_MUTATION") == "1" else 1000)
    True
"""

from __future__ import annotations

import os


def examples(n: int) -> int:
    """``n``, or ``max(20, n // 5)`` under mutation testing."""
    return max(20, n // 5) if os.environ.get("DRIFTLINE_MUTATION") == "1" else n
