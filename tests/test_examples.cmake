# SPDX-License-Identifier: MIT
# test_examples: the channel example (examples/) between two processes
# attached to a poold of its own. See tests/test_examples.sh.
if(TARGET poold AND TARGET poolctl AND TARGET example_producer)
  add_test(NAME test_examples
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_examples.sh $<TARGET_FILE:poold>
                   $<TARGET_FILE:example_producer> $<TARGET_FILE:example_consumer>
                   $<TARGET_FILE:poolctl> ${CMAKE_BINARY_DIR} ${PROJECT_SOURCE_DIR}/examples
                   ${CMAKE_C_COMPILER} "${POOL_SANITIZE}")
  set_tests_properties(test_examples PROPERTIES LABELS "integration;client" TIMEOUT 120)
endif()
