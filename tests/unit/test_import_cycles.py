"""The load run and the destination contract close no import cycle, counting the imports made
only for annotations (under ``TYPE_CHECKING``), which the ``acyclic`` contract of
``lint-imports`` leaves out: a type one layer names for another lives in the lower one
(``LoadResult`` in ``results``, not in the run)."""

from __future__ import annotations

from typing import Any

import pytest

grimp = pytest.importorskip("grimp")

RUN_SIDE = ("syncer.runners", "syncer.destinations")
# What reads a load's result: none of it reaches into the run, even for an annotation.
READERS = ("syncer.results", "syncer.progress", "syncer.observability")


@pytest.fixture(scope="module")
def graph() -> Any:
    return grimp.build_graph("syncer", exclude_type_checking_imports=False, cache_dir=None)


def test_the_load_run_and_the_destination_contract_close_no_cycle(graph: Any) -> None:
    cycles = []
    for package in RUN_SIDE:
        for other in sorted(graph.find_children("syncer") - {package}):
            there = graph.find_shortest_chain(package, other, as_packages=True)
            back = graph.find_shortest_chain(other, package, as_packages=True)
            if there and back:
                cycles.append(f"{' -> '.join(there)}, then {' -> '.join(back)}")
    assert cycles == []


@pytest.mark.parametrize("reader", READERS)
def test_what_reads_a_load_result_does_not_reach_into_the_run(graph: Any, reader: str) -> None:
    assert graph.find_shortest_chain(reader, "syncer.runners", as_packages=True) is None


@pytest.mark.parametrize("package", RUN_SIDE)
def test_the_modules_of_a_package_import_each_other_one_way(graph: Any, package: str) -> None:
    assert graph.nominate_cycle_breakers(package) == set()
