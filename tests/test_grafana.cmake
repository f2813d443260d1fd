# SPDX-License-Identifier: MIT
# test_grafana: contrib/grafana/poold.json is a dashboard Grafana loads and
# every metric it queries is one poold exports (the metric table, and a live
# poold's output). See tests/test_grafana.py.
find_program(PYTHON3 python3)
if(PYTHON3)
  set(_progs "")
  if(TARGET poold AND TARGET poolctl AND TARGET pool_worker)
    set(_progs $<TARGET_FILE:poold> $<TARGET_FILE:poolctl> $<TARGET_FILE:pool_worker>)
  endif()
  add_test(NAME test_grafana
           COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_grafana.py
                   ${PROJECT_SOURCE_DIR}/contrib/grafana/poold.json
                   ${PROJECT_SOURCE_DIR}/proto/pproto_metrics.c ${_progs})
  set_tests_properties(test_grafana PROPERTIES LABELS "unit;docs" TIMEOUT 60)
endif()
