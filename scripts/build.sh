#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# build.sh [BUILD_DIR] [cmake options...]: configure and build with CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
