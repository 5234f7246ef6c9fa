"""The one compiled part of driftline: ``features._fold``, the C form of a feature plan's apply and fold
(``features.kernel``). Optional: without a C compiler the install goes on and plans stay pure Python.
``-ffp-contract=off``: no fused multiply-add, so every double operation rounds as Python's does."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("features._fold", ["features/_fold.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off", "-std=c11"])])
