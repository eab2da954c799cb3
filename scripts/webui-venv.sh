#!/usr/bin/env bash
# webui-venv.sh - a venv with Selenium for the chat page's browser test
# (tests/server/webui_test.py), in the cache, never the repository. Prints its python.
# The browser and its driver are Debian's (chromium, chromium-driver: setup-deps.sh),
# given to Selenium by path, so Selenium Manager never tries to download one.
# The pin is the version the test was written against (4.52 wants a certifi newer than
# PyPI serves here); a second run is a no-op.
exec "$(dirname "$0")/pinned-venv.sh" webui-venv selenium "selenium==4.51.0"
