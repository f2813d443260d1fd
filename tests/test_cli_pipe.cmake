# SPDX-License-Identifier: MIT
# test_cli_pipe: poolctl when its standard output fails (the reader left:
# status 0, silent; any other error: status 1 and a message), against a
# poold of its own. See tests/test_cli_pipe.sh.
if(TARGET poold AND TARGET poolctl)
  add_test(NAME test_cli_pipe
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_pipe.sh $<TARGET_FILE:poold>
                   $<TARGET_FILE:poolctl>)
  set_tests_properties(test_cli_pipe PROPERTIES LABELS "integration;client" TIMEOUT 120)
endif()
