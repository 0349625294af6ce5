# Two commands do all the set-up on a fresh machine:
#   make demo   -> venv + install, init a demo workspace (tiny-random model, generated dataset), train it
#   make test   -> venv + install, the whole test suite
# torch is installed first, on its own: on a GPU machine pip's default torch is a CUDA build; on the
# CPU-only dev/CI machines torch==2.13.0 resolves to the CPU build on local disk. pyproject.toml
# itself never pins a torch flavour.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO ?= demo
BIN := $(VENV)/bin
STAMP := $(VENV)/.fluxtui-installed

.PHONY: demo test test-fast test-int4 lint generate clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	test -f $(DEMO)/project.toml || $(BIN)/fluxtui init $(DEMO) --demo
	$(BIN)/fluxtui run $(DEMO)
	@echo "LoRA and validation images: $(DEMO)/outputs/<run>/lora and .../validation"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not int4" -q

# quanto's int2/int4 kernels compile a C++ extension on first use (~40 s): kept out of `make test`
test-int4: $(STAMP)
	$(BIN)/python -m pytest -m int4 -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow and not int4" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

generate: $(STAMP)
	$(BIN)/python -m fluxtui.core.generate

clean-demo:
	rm -rf $(DEMO)
