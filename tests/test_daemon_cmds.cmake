# SPDX-License-Identifier: MIT
if(TARGET pd_core)
  pool_add_test(test_daemon_cmds SOURCES test_daemon_cmds.c LABELS "unit;daemon" LIBS pd_core)
  target_include_directories(test_daemon_cmds PRIVATE ${PROJECT_SOURCE_DIR}/daemon
                             ${PROJECT_SOURCE_DIR}/shm ${PROJECT_SOURCE_DIR}/proto
                             ${PROJECT_SOURCE_DIR}/client)
endif()
