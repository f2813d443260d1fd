if(TARGET poold)
  pool_add_test(test_storm SOURCES test_storm.c LABELS "stress;e2e" TIMEOUT 300
                LIBS poolclient_static)
  target_include_directories(test_storm PRIVATE ${PROJECT_SOURCE_DIR}/client
                             ${PROJECT_SOURCE_DIR}/shm)
  target_compile_definitions(test_storm PRIVATE POOLD_BIN="$<TARGET_FILE:poold>")
  add_dependencies(test_storm poold)
endif()
