pool_add_test(test_topic SOURCES test_topic.c LABELS "stress;client" TIMEOUT 300
              LIBS poolclient_static)
target_include_directories(test_topic PRIVATE ${PROJECT_SOURCE_DIR}/client
                           ${PROJECT_SOURCE_DIR}/shm)
