# telegate's front door. Every target works from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo demo-two-orgs test lint pytest pytest-pg bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

## Run the gateway on embedded SQLite under ./data (keys are generated on first start).
run: $(STAMP)
	$(BIN)/telegate keys init --data-dir data
	$(BIN)/telegate serve --data-dir data

## The gateway with a seeded scenario (admin, provider, patient, device, consent, a call) and
## a simulated device posting vitals; prints the links to open. Data in ./demo-data.
demo: $(STAMP)
	$(BIN)/python -m gateway.demo --data-dir demo-data

## Two organizations (ports 8443 and 8444) witnessing each other, trusting each other's
## providers: a provider of B scheduled a call with a patient of A. Data in ./demo-two-orgs.
demo-two-orgs: $(STAMP)
	$(BIN)/python -m gateway.demo --two-orgs --data-dir demo-two-orgs

## Lint, type-check, then run every test.
test: lint pytest

pytest: $(STAMP)
	env -u TELEGATE_TEST_DATABASE_URL $(BIN)/python -m pytest -q -rs --durations=25
	$(MAKE) --no-print-directory pytest-pg

## The gateway's tests again with the ledger and the converted stores on PostgreSQL (one
## fresh schema per test; docs/database.md). Where no server answers it says so and stops,
## except in CI (CI=true), where that is a failure.
PG_URL ?= $(or $(TELEGATE_TEST_DATABASE_URL),postgresql://postgres@127.0.0.1:5432/test)
pytest-pg: $(STAMP)
	@if $(BIN)/python -c "import psycopg, sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$(PG_URL)" 2>/dev/null; then \
	    TELEGATE_TEST_DATABASE_URL="$(PG_URL)" $(BIN)/python -m pytest -q -rs --durations=25 tests/gateway tests/db tests/federation tests/witness tests/web; \
	elif [ "$$CI" = "true" ]; then \
	    echo "CI=true: PostgreSQL does not answer at $(PG_URL)"; exit 1; \
	else \
	    echo "PostgreSQL does not answer at $(PG_URL): the PostgreSQL pass did not run"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check ledger gateway tests bench fuzz
	$(BIN)/ruff format --check ledger gateway tests bench fuzz
	$(BIN)/mypy --strict ledger gateway

## Side-by-side benchmarks (quick mode; see bench/README.md for the full run).
bench: $(STAMP)
	$(BIN)/python -m bench.ledger --quick
	$(BIN)/python -m bench.auth --quick

## Coverage-guided fuzzing (atheris): each harness in fuzz/ for FUZZ_SECONDS from its
## committed corpus; new inputs and crashes land in fuzz/.work (see fuzz/README.md).
FUZZ_SECONDS ?= 60
FUZZERS := $(filter-out seeds,$(basename $(notdir $(filter-out fuzz/_%,$(wildcard fuzz/*.py)))))

fuzz: $(STAMP)
	@for h in $(FUZZERS); do \
	  echo "== fuzz/$$h.py ($(FUZZ_SECONDS) s)"; mkdir -p fuzz/.work/$$h; \
	  PYTHONPATH=$(CURDIR) $(BIN)/python fuzz/$$h.py -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=fuzz/.work/$$h- \
	    fuzz/.work/$$h fuzz/corpus/$$h 2>&1 | grep -E 'DONE|^stat::average|Uncaught|Error|crash-' \
	    || true; \
	  ls fuzz/.work/$$h-crash-* fuzz/.work/$$h-timeout-* >/dev/null 2>&1 && exit 1; \
	done; echo "fuzz: no crash"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis fuzz/.work
