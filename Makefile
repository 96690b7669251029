# Every target that needs Python installs what it needs first, so each works alone on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO_OUT ?= generated
PROTOS := $(shell find proto -name '*.proto' | sort)
DEMO := .spaceone-job/demo-jobs.jsonl

.PHONY: install proto run test lint fuzz bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# googleapis-common-protos ships google/api/annotations.proto; grpc_tools adds google/protobuf/*.
proto: $(STAMP)
	mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iproto \
	  -I$$($(PY) -c 'import google.api.annotations_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parents[2])') \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) $(PROTOS)

# The demo jobs are laid back from now, so the running ones are recent (see spaceone_job/demo.py).
run: $(STAMP)
	$(PY) -m spaceone_job.demo --out $(DEMO)
	$(VENV)/bin/spaceone-job serve --seed $(DEMO)

test: $(STAMP)
	$(PY) -m pytest

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py

# Our server vs a bare grpcio ceiling at 1k and 10k jobs; writes bench/RESULTS.md (a few minutes).
bench: $(STAMP)
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check spaceone_job tests
	$(VENV)/bin/ruff format --check spaceone_job tests
	$(VENV)/bin/mypy spaceone_job tests

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
