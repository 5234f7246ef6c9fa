"""The Kafka runtime: client factories, the batch loop (the one owner of offsets), topic admin, the stage handlers
(fused pipeline, monitor, online learning), the workers that assemble them, and the Faust runner."""
