# SPDX-License-Identifier: MIT
# test_exit: exit, _exit, detach, SIGKILL and abort of forked processes of an
# embedded pool, counted as exits or crashes, with every block given back.
pool_add_test(test_exit SOURCES test_exit.c LABELS "unit;client" LIBS poolclient_static)
target_include_directories(test_exit PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
