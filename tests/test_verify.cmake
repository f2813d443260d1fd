# SPDX-License-Identifier: MIT
# pshm_verify never reports a healthy pool: random legal operations of
# forked workers (kills, an exec, exits, reclaims) against the checker.
pool_add_test(test_verify SOURCES test_verify.c LABELS "stress;shm" TIMEOUT 120
              LIBS poolclient_static)
target_include_directories(test_verify PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm ${PROJECT_SOURCE_DIR}/daemon
                           ${PROJECT_SOURCE_DIR}/proto)
