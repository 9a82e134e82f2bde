"""The examples in the public docstrings run and print what they show (torch-free modules)."""

import doctest
import importlib

import pytest

MODULES = ["colorshare", "colorshare.solvers.api", "colorshare.formulations.graph", "colorshare.bench.methods",
           "colorshare.bench.solvers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
