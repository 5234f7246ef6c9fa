# Quickstart targets: each bootstraps .venv on first use, installs, and runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration bench lint clean compose-up compose-down report-screenshot mutation docker-test peers-venv

$(STAMP): pyproject.toml setup.py features/_exact.h features/_fold.c features/_check.c features/_save.c monitor/_sensors.c models/_matrix.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,dev,faust,parquet,examples]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

test: $(STAMP)
	$(BIN)/ruff check streams features models monitor tests bench examples
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

integration: $(STAMP)
	$(BIN)/python -m pytest -m integration

lint: $(STAMP)
	$(BIN)/ruff check streams features models monitor tests bench examples

# The README's picture of the drift report: the seeded demo-like run, opened in headless chromium.
report-screenshot: $(STAMP)
	$(BIN)/python -m streams.local.browser --sample docs/report.png

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml), in a venv of its own (see the `mutation`
# extra); not part of `make test`. Prints the score per module (tests/mutation/score.py) and fails under 90 %.
# GROUPS narrows it, e.g. make mutation GROUPS="psi policy" (tests/mutation/run.py --help lists them)
MUT_VENV := .venv-mutation
MUT_STAMP := $(MUT_VENV)/.installed

$(MUT_STAMP): pyproject.toml
	test -x $(MUT_VENV)/bin/python || $(PY) -m venv $(MUT_VENV)
	$(MUT_VENV)/bin/python -m pip install -q --upgrade pip
	$(MUT_VENV)/bin/python -m pip install -q -e ".[test,mutation]"
	touch $(MUT_STAMP)

mutation: $(MUT_STAMP)
	$(MUT_VENV)/bin/python -m tests.mutation.run $(GROUPS)

# The `peers` bench (bench/peers_bench.py) runs its Quix Streams and Bytewax jobs with this venv's python (the
# `bench` extra): quixstreams pins an older confluent-kafka than the runtime, so they never share a venv.
PEERS_VENV := .venv-bench
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q -e ".[bench]"
	touch $(PEERS_STAMP)

peers-venv: $(PEERS_STAMP)

clean:
	rm -rf $(VENV) $(MUT_VENV) .mutation mutants .driftline .pytest_cache .hypothesis
	rm -rf features/*.so monitor/*.so build

# The real stack in Docker (Kafka, Redis, workers, Prometheus, Grafana); needs DRIFTLINE_CONTROL_KEY set.
compose-up:
	docker compose up --build -d

compose-down:
	docker compose down

# The container tests (pytest -m docker) on the private Docker engine with Debian-built images of
# deploy/local-engine.sh (README "The stack in Docker"); the engine stays up: `bash deploy/local-engine.sh stop`.
docker-test: $(STAMP)
	bash deploy/local-engine.sh start
	eval "$$(bash deploy/local-engine.sh env)" && DRIFTLINE_DOCKER_TESTS=1 DRIFTLINE_DOCKER_REQUIRED=1 \
		$(BIN)/python -m pytest -m docker tests/integration
