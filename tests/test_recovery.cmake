# SPDX-License-Identifier: MIT
# test_recovery: deaths at chosen instructions of the journaled steps, built
# deterministically, then the real reclaim and exact books by walking.
pool_add_test(test_recovery SOURCES test_recovery.c LABELS "unit;shm" LIBS poolclient_static)
target_include_directories(test_recovery PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
