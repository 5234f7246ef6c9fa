"""driftline streams package: the Kafka plumbing and the CLI.

Three kinds of module, one sub-package each, on top of the shared basics (``settings``, ``exceptions``,
``logs``, ``metrics``, ``codec``, ``timeline``):

- ``streams.runtime``: the Kafka runtime (clients, the batch loop, topics, stage handlers, workers, Faust);
- ``streams.control``: the control plane (signed commands, acks, their Kafka channel);
- ``streams.local``: the embedded local stack, the simulator, the demo and the ``driftline`` CLI.
"""
