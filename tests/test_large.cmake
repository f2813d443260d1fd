pool_add_test(test_large SOURCES test_large.c LABELS "stress;shm;client" TIMEOUT 300
              LIBS poolclient_static)
target_include_directories(test_large PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
