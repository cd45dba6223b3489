# The two commands: `make demo` (the main job, on the built-in demo source) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench notebooks clean

BENCHES := $(basename $(notdir $(wildcard tests/bench/bench_*.py)))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/anyres-data build --config pipelines/demo.yaml --resume
	$(BIN)/anyres-data stats out/demo-hr --plot out/demo/stats.png
	$(BIN)/anyres-train --config pipelines/demo-phase1.yaml --resume
	$(BIN)/anyres-train --config pipelines/demo-phase2.yaml --resume
	for size in 32 128 512; do \
		$(BIN)/anyres-render runs/demo/phase2 --size $$size --tile 256 --out out/demo/render-$$size.png || exit 1; \
	done
	$(BIN)/anyres-render runs/demo/phase2 --zoom --zoom-levels 5 --out out/demo/zoom.png
	@echo "demo done: dataset out/demo-hr, runs in runs/demo, images in out/demo/"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# every benchmark at its default size, one after another (hours on 2 cores); each prints its table
bench: $(STAMP)
	for bench in $(BENCHES); do \
		echo "== $$bench"; $(BIN)/python -m tests.bench.$$bench || exit 1; \
	done

# Jupyter, to open the notebooks in notebooks/
notebooks: $(STAMP)
	$(BIN)/pip install --quiet -e '.[notebooks]'
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf out runs .pytest_cache
