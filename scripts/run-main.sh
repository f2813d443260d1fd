#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-main.sh: install dependencies, build, and run the main job: the seed's
# burn-after-reading benchmark suite (FIRST and SECOND) with libpoolclient
# beside malloc, std::vector, std::pmr, the seed's mutex pool and the
# no-allocator floor, then the ratio tables. POOL_BENCH_QUICK=1: a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
bash bench/run.sh build
