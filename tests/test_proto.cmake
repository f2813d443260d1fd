pool_add_test(test_proto SOURCES test_proto.c LABELS "unit;proto" LIBS pproto)
# docs/stats.md lists every Prometheus name of proto/pproto_metrics.c.
target_compile_definitions(test_proto PRIVATE STATS_MD="${PROJECT_SOURCE_DIR}/docs/stats.md")
