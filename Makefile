.PHONY: test quality style

# The README's venv; `make test PYTHON=python` uses whatever python is active instead.
PYTHON ?= .venv/bin/python

test:
	$(PYTHON) -m pytest -q -m "not gpu" tests

quality:
	ruff check compressa_hf tests bench recipes
	ruff format --check compressa_hf tests bench recipes

style:
	ruff check --fix compressa_hf tests bench recipes
	ruff format compressa_hf tests bench recipes
