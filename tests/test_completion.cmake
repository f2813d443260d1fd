# SPDX-License-Identifier: MIT
# test_completion: poolctl's bash completion (tools/poolctl.bash) against
# `poolctl --help` and poolctl's option parser. See tests/test_completion.sh.
if(TARGET poolctl)
  add_test(NAME test_completion
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_completion.sh
                   ${PROJECT_SOURCE_DIR}/tools/poolctl.bash $<TARGET_FILE:poolctl>)
  set_tests_properties(test_completion PROPERTIES LABELS "unit;client" TIMEOUT 120)
endif()
