# SPDX-License-Identifier: MIT
# test_systemd: poold under a real systemd booted in namespaces (root only;
# skips with exit 77 where it cannot boot one).  See tests/systemd_e2e.sh.
# Included from tests/ (CMAKE_CURRENT_SOURCE_DIR is tests/) or, until
# tests/CMakeLists.txt lists it, from systemd/CMakeLists.txt: the guard keeps
# it to one registration.
get_property(_pool_systemd_test GLOBAL PROPERTY POOL_TEST_SYSTEMD)
if(NOT _pool_systemd_test)
  set_property(GLOBAL PROPERTY POOL_TEST_SYSTEMD ON)
  add_test(NAME test_systemd
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/systemd_e2e.sh ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR})
  set_tests_properties(test_systemd PROPERTIES LABELS "integration;systemd" TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
