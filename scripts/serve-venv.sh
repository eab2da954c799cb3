#!/usr/bin/env bash
# serve-venv.sh - a venv with the official `openai` client for the server tests
# (tests/server/*.py), in the cache, never the repository. Prints its python.
# The pin is the version the tests were written against; a second run is a no-op.
exec "$(dirname "$0")/pinned-venv.sh" serve-venv openai "openai==3.51.0"
