"""Layering of src/delever: no import cycles; domain packages do not reach the config layer or the CLI.

The import graph (grimp) counts every import statement: module level, inside functions and under
``TYPE_CHECKING``, so a function-local import cannot hide a cycle. Domain packages: engine, market,
venues (formulas, tiers, readers; ``venues.rules``, the pydantic venue rules, may use the pydantic base
types of ``delever.config_types`` but not the scenario), lending. Config layer: ``delever.scenario``;
front door: ``delever.cli`` (typer).
"""

from __future__ import annotations

import grimp
import pytest

DOMAIN = ("delever.engine", "delever.market", "delever.venues", "delever.lending")
FORBIDDEN = ("delever.scenario", "delever.cli", "delever.cli_options", "typer")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("delever", include_external_packages=True, cache_dir=None)


def _internal(graph) -> list[str]:
    return sorted(m for m in graph.modules if m == "delever" or m.startswith("delever."))


def import_cycles(graph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import edge that closes one (deduplicated by module set and order)."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for m in _internal(graph):
        for i in sorted(graph.find_modules_directly_imported_by(m)):
            if not i.startswith("delever") or not graph.chain_exists(importer=i, imported=m):
                continue
            chain = (m, *graph.find_shortest_chain(importer=i, imported=m))
            cycles.setdefault(frozenset(chain), chain)
    return sorted(cycles.values())


def _describe(graph, chain: tuple[str, ...]) -> str:
    steps = []
    for a, b in zip(chain, chain[1:], strict=False):
        lines = [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)]
        steps.append(f"{a} -(line {','.join(map(str, lines))})-> {b}")
    return "; ".join(steps)


def test_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_does_not_import_config_layer_or_cli(graph, package):
    modules = [m for m in _internal(graph) if m == package or m.startswith(package + ".")]
    assert modules, f"{package}: no modules found"
    bad = []
    for m in modules:
        for f in FORBIDDEN:
            if f in graph.modules and graph.chain_exists(importer=m, imported=f):
                bad.append(" -> ".join(graph.find_shortest_chain(importer=m, imported=f)))
    assert not bad, "domain module reaches the config layer / CLI:\n" + "\n".join(bad)


def test_the_checks_can_fail():
    """The detectors find a cycle and a forbidden import when one is added to a fresh graph."""
    g = grimp.build_graph("delever", include_external_packages=True, cache_dir=None)
    g.add_import(importer="delever.venues.tiers", imported="delever.engine.core")
    g.add_import(importer="delever.engine.core", imported="delever.venues.tiers")
    g.add_import(importer="delever.market.depth", imported="delever.scenario")
    assert any({"delever.venues.tiers", "delever.engine.core"} <= set(c) for c in import_cycles(g))
    assert g.chain_exists(importer="delever.market.depth", imported="delever.scenario")
