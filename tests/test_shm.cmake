pool_add_test(test_shm SOURCES test_shm.c LABELS "unit;shm" LIBS pshm)
target_include_directories(test_shm PRIVATE ${PROJECT_SOURCE_DIR}/client ${PROJECT_SOURCE_DIR}/shm)
