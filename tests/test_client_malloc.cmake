pool_add_test(test_client_malloc SOURCES test_client_malloc.c LABELS "unit;client"
              LIBS poolclient_static)
target_include_directories(test_client_malloc PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
