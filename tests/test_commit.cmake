# SPDX-License-Identifier: MIT
# test_commit: memory committed as spans are carved, given back when free
# (a 4 GiB poold before workers, poold's purge, a full tmpfs). Runs poold.
if(TARGET poold)
  pool_add_test(test_commit SOURCES test_commit.c LABELS "integration;shm;daemon" TIMEOUT 120
                LIBS poolclient_static)
  target_include_directories(test_commit PRIVATE ${PROJECT_SOURCE_DIR}/client
                             ${PROJECT_SOURCE_DIR}/shm)
  target_compile_definitions(test_commit PRIVATE POOLD_BIN="$<TARGET_FILE:poold>")
  add_dependencies(test_commit poold)
endif()
