"""The benchmarks import against the code as it is (they are run by hand, not by CI, so a
rename in syncer would otherwise break them unnoticed)."""

from __future__ import annotations

import importlib

import pytest

from benchmarks.__main__ import BENCHMARKS


@pytest.mark.parametrize("module", sorted({module for module, _, _ in BENCHMARKS.values()}))
def test_each_benchmark_imports(module: str) -> None:
    loaded = importlib.import_module(f"benchmarks.{module}")
    assert callable(loaded.main)
    assert callable(loaded.add_arguments)
