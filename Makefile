# Two entry points for a fresh machine:
#   make demo   install the package in a virtualenv and run job-notifier demo
#   make test   install the servers and test dependencies, run the suite on
#               Python 2.7 and Python 3.11

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PYTHON27 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/2.7*/bin/python) $(shell command -v python2.7))
PYTHON311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11*/bin/python) $(shell command -v python3.11) $(shell command -v python3))
VENV = .venv
PYTEST_ARGS ?=

.PHONY: demo test test-py27 test-py311 system-packages venvs tox bench clean

demo: $(VENV)/demo/bin/job-notifier
	$(VENV)/demo/bin/job-notifier demo

$(VENV)/demo/bin/job-notifier: setup.py setup.cfg
	$(PYTHON311) -m venv $(VENV)/demo
	$(VENV)/demo/bin/pip install --quiet --upgrade pip
	$(VENV)/demo/bin/pip install --quiet -e .
	touch $@

system-packages:
	./.ci/install-system-packages

$(VENV)/py27/.installed: setup.py setup.cfg
	$(PYTHON311) -m pip install --quiet 'virtualenv<20.22'
	$(PYTHON311) -m virtualenv --quiet -p $(PYTHON27) $(VENV)/py27
	$(VENV)/py27/bin/pip install --quiet -e '.[all,test]'
	touch $@

$(VENV)/py311/.installed: setup.py setup.cfg
	$(PYTHON311) -m venv $(VENV)/py311
	$(VENV)/py311/bin/pip install --quiet --upgrade pip
	$(VENV)/py311/bin/pip install --quiet -e '.[all,test]' selenium gunicorn
	touch $@

venvs: $(VENV)/py27/.installed $(VENV)/py311/.installed

# The broker needs Python 3.9+, so the Python 2.7 run starts it from the
# Python 3.11 virtualenv.
test-py27: $(VENV)/py27/.installed $(VENV)/py311/.installed
	JOB_NOTIFIER_BROKER_PYTHON=$(abspath $(VENV)/py311/bin/python) \
	$(VENV)/py27/bin/python -m pytest $(PYTEST_ARGS)

test-py311: $(VENV)/py311/.installed
	$(VENV)/py311/bin/python -m pytest $(PYTEST_ARGS)

# Python 2.7 runs first, so the last line printed is the summary of the
# Python 3.11 run; make stops at the first run that fails.
test: system-packages test-py27 test-py311

# Every supported interpreter that pyenv has installed goes on PATH, so
# tox finds python2.7 and python3.6 to python3.13.
PYENV_BINS = $(subst $(eval) ,:,$(wildcard $(PYENV_ROOT)/versions/*/bin))

tox: system-packages
	$(PYTHON311) -m pip install --quiet 'tox<4' 'virtualenv<20.22'
	PATH="$(PYENV_BINS):$$PATH" $(PYTHON311) -m tox $(TOX_ARGS)

# Measures on Python 3.11 and 2.7 against servers of its own and writes
# docs/benchmarks.rst, .json and .png; takes about ten minutes. BENCH_ARGS
# takes the options of python -m bench, such as --quick.
BENCH_ARGS ?=

$(VENV)/py311/.bench-installed: $(VENV)/py311/.installed
	$(VENV)/py311/bin/pip install --quiet -e '.[bench]'
	touch $@

bench: system-packages venvs $(VENV)/py311/.bench-installed
	$(VENV)/py311/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tox build dist *.egg-info
