pool_add_test(test_ring SOURCES test_ring.c LABELS "unit;shm" TIMEOUT 180 LIBS pshm)
