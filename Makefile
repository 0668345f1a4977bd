.PHONY: test quality style

test:
	python -m pytest -q -m "not gpu" tests

quality:
	ruff check compressa_hf tests bench recipes
	ruff format --check compressa_hf tests bench recipes

style:
	ruff check --fix compressa_hf tests bench recipes
	ruff format compressa_hf tests bench recipes
