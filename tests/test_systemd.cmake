# SPDX-License-Identifier: MIT
# test_systemd: poold under a real systemd booted in namespaces (root only;
# skips with exit 77 where it cannot boot one). See tests/systemd_e2e.sh.
# With test_deb it installs the package built there (dpkg -i, dpkg -r);
# without, the build (cmake --install).
if(POOL_TEST_DEB)
  set(_deb --deb)
else()
  set(_deb)
endif()
add_test(NAME test_systemd
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/systemd_e2e.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} ${_deb})
set_tests_properties(test_systemd PROPERTIES LABELS "integration;systemd" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
if(POOL_TEST_DEB)
  set_tests_properties(test_systemd PROPERTIES FIXTURES_REQUIRED poold_deb)
endif()
