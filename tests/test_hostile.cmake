if(TARGET poold)
  pool_add_test(test_hostile SOURCES test_hostile.c LABELS "integration;e2e" TIMEOUT 300)
  target_compile_definitions(test_hostile PRIVATE
    POOLD_BIN="$<TARGET_FILE:poold>" POOLCTL_BIN="$<TARGET_FILE:poolctl>"
    WORKER_BIN="$<TARGET_FILE:pool_worker>")
  # PSHM_ABI_VERSION, for the HELLOs it forges.
  target_include_directories(test_hostile PRIVATE ${PROJECT_SOURCE_DIR}/shm)
  add_dependencies(test_hostile poold poolctl pool_worker)
endif()
