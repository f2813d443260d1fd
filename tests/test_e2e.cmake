if(TARGET poold)
  pool_add_test(test_e2e SOURCES test_e2e.c LABELS "integration;e2e" TIMEOUT 300)
  target_compile_definitions(test_e2e PRIVATE
    POOLD_BIN="$<TARGET_FILE:poold>" POOLCTL_BIN="$<TARGET_FILE:poolctl>"
    WORKER_BIN="$<TARGET_FILE:pool_worker>")
  add_dependencies(test_e2e poold poolctl pool_worker)
  target_link_libraries(test_e2e PRIVATE pshm)
endif()
