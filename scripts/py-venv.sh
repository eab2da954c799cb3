#!/usr/bin/env bash
# py-venv.sh - a venv with pytest for the Python package's tests (python/tests, run by
# tests/python/python_tests.sh), in the cache, never the repository. Prints its python.
# The pin is the version the tests were written against; a second run is a no-op.
exec "$(dirname "$0")/pinned-venv.sh" py-venv pytest "pytest==8.3.4"
