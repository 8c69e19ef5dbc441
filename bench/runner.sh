#!/usr/bin/env bash
# The pod runner's benchmark: builds the release binary (and a static one), then prints a
# Markdown table of ochopod next to supervisord. See bench/README.md. Options: bench/runner.py -h.
set -euo pipefail
cd "$(dirname "$0")/.."
# runner.py starts every process in a session of its own and stops them all on its way out
# (Ctrl-C and TERM included); exec so that a signal to this script reaches it directly.
exec python3 bench/runner.py "$@"
