# SPDX-License-Identifier: MIT
# test_crashpoints: death at every shared store of the slow paths, then the
# real reclaim and exact books. Only in a build with POOL_CRASH_POINTS
# (shm/pshm_atomic.h), which no release build sets.
if(POOL_CRASH_POINTS)
  pool_add_test(test_crashpoints SOURCES test_crashpoints.c LABELS "crash;shm" TIMEOUT 600
                LIBS pshm)
  target_include_directories(test_crashpoints PRIVATE ${PROJECT_SOURCE_DIR}/shm)
endif()
