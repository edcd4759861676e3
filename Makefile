# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash

.PHONY: setup demo test bench

setup:
	bash subtools/install.sh

demo: setup
	bash recipe/mini/run.sh

test: setup
	. ./path.sh && python3 -m pytest -q -x tests

bench: setup
	. ./path.sh && for b in bench/*.py; do echo "== $$b"; python3 $$b || exit 1; done
