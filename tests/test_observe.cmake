# SPDX-License-Identifier: MIT
# test_observe: poolctl top (in a pseudo-terminal and plain), who holds the
# memory, each warning raised and cleared, error messages; against pooldS of
# its own. See tests/test_observe.py.
find_program(PYTHON3 python3)
if(TARGET poold AND TARGET poolctl AND TARGET pool_worker AND PYTHON3)
  # The preload library under a sanitizer cannot be preloaded into /bin/sh
  # (the sanitizer's runtime must come first): the POOLD_ names are then
  # checked in the plain build only.
  set(_preload "")
  if(TARGET poolclient-preload AND NOT POOL_SANITIZE)
    set(_preload $<TARGET_FILE:poolclient-preload>)
  endif()
  add_test(NAME test_observe
           COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_observe.py $<TARGET_FILE:poold>
                   $<TARGET_FILE:poolctl> $<TARGET_FILE:pool_worker> ${_preload})
  set_tests_properties(test_observe PROPERTIES LABELS "integration;client" TIMEOUT 240)
endif()
