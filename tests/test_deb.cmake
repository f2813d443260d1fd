# SPDX-License-Identifier: MIT
# test_deb: scripts/build-deb.sh builds the Debian package poold into the
# build directory (dpkg-buildpackage over debian/; lintian errors fail it).
# test_systemd then installs that package with dpkg -i (fixture poold_deb).
# Not in sanitizer builds: the package is built from the sources with its
# own release flags, and test_systemd skips there anyway.
find_program(POOL_DPKG_BUILDPACKAGE dpkg-buildpackage)
find_program(POOL_DH dh)
find_program(POOL_LINTIAN lintian)
if(TARGET poold AND NOT POOL_SANITIZE AND POOL_DPKG_BUILDPACKAGE AND POOL_DH AND POOL_LINTIAN)
  add_test(NAME test_deb
           COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/build-deb.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(test_deb PROPERTIES LABELS "integration;deb" TIMEOUT 600
                       FIXTURES_SETUP poold_deb)
  set(POOL_TEST_DEB ON)
elseif(TARGET poold AND NOT POOL_SANITIZE)
  # Missing tools are a skip CI can see (.ci/run fails on it), not a test
  # that silently is not there.
  add_test(NAME test_deb COMMAND sh -c
           "echo 'test_deb: skipped: needs dpkg-buildpackage, dh and lintian (scripts/deps.sh)'; exit 77")
  set_tests_properties(test_deb PROPERTIES LABELS "integration;deb" SKIP_RETURN_CODE 77)
  set(POOL_TEST_DEB OFF)
else()
  message(STATUS "test_deb: not added (sanitizer build: the package has its own release flags)")
  set(POOL_TEST_DEB OFF)
endif()
