pool_add_test(test_owners SOURCES test_owners.c LABELS "stress;shm;client" TIMEOUT 600
              LIBS poolclient_static)
target_include_directories(test_owners PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
if(POOL_SANITIZE)
  # The 1 GiB reclaim figure is a benchmark: a smaller one under sanitizers.
  target_compile_definitions(test_owners PRIVATE POOL_RECLAIM_BENCH_MB=32)
endif()
