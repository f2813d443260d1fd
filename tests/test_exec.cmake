# SPDX-License-Identifier: MIT
# test_exec: HELLO of a pid that holds a slot: the same image keeps it,
# another image (an exec) has the old one reclaimed and counted as an exit.
if(TARGET pd_core)
  pool_add_test(test_exec SOURCES test_exec.c LABELS "unit;daemon" LIBS pd_core)
  target_include_directories(test_exec PRIVATE ${PROJECT_SOURCE_DIR}/daemon
                             ${PROJECT_SOURCE_DIR}/shm ${PROJECT_SOURCE_DIR}/proto)
endif()
