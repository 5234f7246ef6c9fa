"""driftline's compiled parts, both optional (without a C compiler the install goes on and Python serves):
``features._fold``, the C form of a feature plan's apply and fold (``features.kernel``), and ``features._check``,
the common case of parsing a record (``features.record_parser``).
``-ffp-contract=off``: no fused multiply-add, so every double operation rounds as Python's does."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-ffp-contract=off", "-std=c11"]
setup(ext_modules=[Extension(f"features.{name}", [f"features/{name}.c"], optional=True, extra_compile_args=FLAGS)
                   for name in ("_fold", "_check")])
