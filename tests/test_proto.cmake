pool_add_test(test_proto SOURCES test_proto.c LABELS "unit;proto" LIBS pproto)
