"""driftline's compiled parts, all optional (without a C compiler the install goes on and Python serves):
``features._fold``, the C form of a feature plan's apply and fold (``features.kernel``), ``features._check``,
the common case of parsing a record (``features.record_parser``), ``features._save``, the wire bytes of a
checkpoint's save call (``features.save_wire``), ``monitor._sensors``, the sensor checks' per-reading step
(``monitor.sensor_checks``), and ``models._matrix``, a batch's model matrix from its feature vectors
(``models.loaded``).
``-ffp-contract=off``: no fused multiply-add, so every double operation rounds as Python's does."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-ffp-contract=off", "-std=c11"]
SHARED = "features/_exact.h"  # what they share (an int as Python's double, an array's buffer)
setup(ext_modules=[Extension(module, [module.replace(".", "/") + ".c"], optional=True, extra_compile_args=FLAGS,
                             include_dirs=["features"], depends=[SHARED])
                   for module in ("features._fold", "features._check", "features._save", "monitor._sensors",
                                  "models._matrix")])
