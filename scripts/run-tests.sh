#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-tests.sh: install dependencies, build, and run every test (all labels).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
cd build
ctest --output-on-failure --timeout 900 "$@"
