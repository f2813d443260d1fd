pool_add_test(test_chan SOURCES test_chan.c LABELS "stress;client" TIMEOUT 300
              LIBS poolclient_static)
target_include_directories(test_chan PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
