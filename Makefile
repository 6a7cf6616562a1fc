# Two commands do all the set-up on a fresh machine:
#   make demo   - install everything, then train on an embedded default and evaluate (the main job)
#   make test   - install everything, then run the test suite
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test install lock clean

$(STAMP): pyproject.toml constraints.txt scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/contrastkit demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

# Re-resolve the dependencies without constraints in a scratch venv and rewrite constraints.txt (on purpose only:
# rerun the tests and benchmarks after it).
lock:
	bash scripts/update_constraints.sh

clean:
	rm -rf .venv runs
