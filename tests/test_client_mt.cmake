pool_add_test(test_client_mt SOURCES test_client_mt.c LABELS "stress;client" TIMEOUT 600
              LIBS poolclient_static)
target_include_directories(test_client_mt PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
