"""The local stack and the CLI: the embedded broker and Redis (``stack``, ``procs``), the simulator and its
producer, the demo, and the ``driftline`` command line (``cli``)."""
