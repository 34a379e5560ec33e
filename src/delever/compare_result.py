"""Policy sets and the result of comparing them (``delever.compare.run_compare``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delever.scenario import Scenario
from delever.stress_result import StressResult

__all__ = ["CompareResult", "PolicyRun", "PolicySet"]


@dataclass(frozen=True)
class PolicySet:
    """One policy: scenario overrides and a name.

    Attributes:
        name: unique name (a row of the comparison).
        description: one line for people.
        overrides: nested table merged into the scenario (``--set`` semantics, leaf by leaf).
        source: where it came from (``preset partial``, a file path, a frontier value), for messages.
    """

    name: str
    description: str
    overrides: dict[str, Any]
    source: str


@dataclass
class PolicyRun:
    """One policy's stress run: the policy, its scenario, venue rules and the :class:`StressResult`."""

    policy: PolicySet
    scenario: Scenario
    result: StressResult | None
    venue_rules: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareResult:
    """A finished comparison.

    Attributes:
        summary: the ``--json`` object (``compare.json``): one row per policy with its metrics.
        runs: the policies' stress runs, in order.
        baseline: index of the reference policy.
        run_folder: the written folder, or None.
    """

    summary: dict[str, Any]
    runs: list[PolicyRun]
    baseline: int
    run_folder: Path | None = None
