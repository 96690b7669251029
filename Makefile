# Every target that needs Python installs what it needs first, so each works alone on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO_OUT ?= generated
PROTOS := $(shell find proto -name '*.proto' | sort)
CACHE := .cache
# make run keeps its development keys and demo data here (make clean removes them).
STATE := $(CURDIR)/$(CACHE)/state
DEMO := $(CACHE)/demo-jobs.jsonl
# spaceone-api's wheel, read (never installed) by the wire test: fetched here, not by the tests.
REFERENCE := $(CACHE)/spaceone-api/.fetched
BUF_GOOGLEAPIS := $(CACHE)/buf/googleapis
# spaceone-api's descriptors, what buf breaking compares ours with.
UPSTREAM_SET := $(CACHE)/spaceone-api.binpb

# A descriptor set of every service with its imports: grpcurl -protoset, buf, other tools.
PROTOSET ?= $(CACHE)/spaceone-job.protoset
GOOGLEAPIS = $$($(PY) -c 'import google.api.annotations_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parents[2])')

.PHONY: install proto protoset run test lint fuzz bench soak clean

install: $(STAMP) $(BUF_GOOGLEAPIS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# google/api's annotations for buf (buf.yaml names this folder as a module): buf build, lint and
# breaking then need no registry. Copied from the installed googleapis-common-protos.
$(BUF_GOOGLEAPIS): $(STAMP)
	mkdir -p $@/google/api
	cp $(GOOGLEAPIS)/google/api/annotations.proto $(GOOGLEAPIS)/google/api/http.proto $@/google/api/
	touch $@

$(REFERENCE): $(STAMP)
	$(PY) -m pip download -q --no-deps spaceone-api==2.0.435 -d $(CACHE)/spaceone-api
	touch $(REFERENCE)

# googleapis-common-protos ships google/api/annotations.proto; grpc_tools adds google/protobuf/*.
proto: $(STAMP)
	mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLEAPIS) \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) $(PROTOS)
	# Our extensions are a subpackage of the service's own package: a regular package, then.
	touch $(PROTO_OUT)/spaceone_job/v1/__init__.py
	# The protos' comments (the stubs carry none), for the OpenAPI document's descriptions.
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLEAPIS) --include_source_info \
	  --descriptor_set_out=$(PROTO_OUT)/spaceone_job/v1/sources.binpb $(PROTOS)

protoset: $(STAMP)
	mkdir -p $(dir $(PROTOSET))
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLEAPIS) --include_imports --include_source_info \
	  --descriptor_set_out=$(PROTOSET) $(PROTOS)

# The demo jobs are laid back from now, so the running ones are recent (see spaceone_job/demo.py).
run: $(STAMP)
	mkdir -p $(CACHE)
	$(PY) -m spaceone_job.demo --out $(DEMO)
	$(VENV)/bin/spaceone-job serve --seed $(DEMO) --state-dir $(STATE) --http-port 8080

test: $(STAMP) $(REFERENCE) $(BUF_GOOGLEAPIS)
	$(PY) -m pytest

fuzz: $(STAMP) $(REFERENCE)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py tests/test_parity_property.py \
	  tests/test_producer_property.py tests/test_sizes.py

# Our server vs a bare grpcio ceiling at 1k and 10k jobs (a few minutes); prints the report.
# make bench RECORD=1 also writes it to bench/RESULTS.md.
bench: $(STAMP)
	$(PY) bench/run.py $(if $(RECORD),--record)
	$(PY) bench/watchers.py $(if $(RECORD),--record)

# A minute of every load at once, then SIGTERM (under 3 minutes); exits 1 when a promise broke.
# make soak RECORD=1 also writes the summary to bench/RESULTS.md.
soak: $(STAMP)
	$(PY) bench/soak.py $(if $(RECORD),--record)

LINT_STAMP := $(VENV)/.lint-stamp
$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,lint]'
	touch $(LINT_STAMP)

$(UPSTREAM_SET): $(REFERENCE) protoset
	$(PY) -m tests.support.upstream_descriptors $(CACHE)/spaceone-api/spaceone_api-2.0.435-*.whl \
	  $(PROTOSET) $@

lint: $(LINT_STAMP) $(BUF_GOOGLEAPIS) $(UPSTREAM_SET)
	$(VENV)/bin/ruff check spaceone_job tests bench
	$(VENV)/bin/ruff format --check spaceone_job tests bench
	$(VENV)/bin/mypy spaceone_job tests bench
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/kubernetes-validate --strict --quiet deploy/k8s/*.yaml
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/buf build . -o $(CACHE)/buf/image.binpb
	$(VENV)/bin/buf lint .
	$(VENV)/bin/buf breaking $(CACHE)/buf/image.binpb --against $(UPSTREAM_SET)#format=binpb \
	  --config buf.yaml

clean:
	rm -rf $(VENV) $(CACHE) .spaceone-job build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
