"""The peer jobs import quixstreams / bytewax, which live in the `bench` venv only (``make peers-venv``): their
modules are not collected for doctests in the main venv (``vitals.py`` is)."""

collect_ignore = ["bytewax_job.py", "quix_job.py"]
