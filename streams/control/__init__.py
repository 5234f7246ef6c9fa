"""The control plane: signed commands and acks (``protocol``, pure) and their Kafka edge (``channel``)."""
