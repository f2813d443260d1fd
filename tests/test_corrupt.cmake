pool_add_test(test_corrupt SOURCES test_corrupt.c LABELS "unit;shm" TIMEOUT 120
              LIBS poolclient_static)
target_include_directories(test_corrupt PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
