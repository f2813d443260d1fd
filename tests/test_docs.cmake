# SPDX-License-Identifier: MIT
# test_docs: every setting, flag, command, option and environment variable
# is in README.md and poold.conf.example too (the man pages: test_man). See
# tests/check_docs.sh.
if(TARGET poold AND TARGET poolctl)
  add_test(NAME test_docs
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_docs.sh ${PROJECT_SOURCE_DIR}
                   $<TARGET_FILE:poold> $<TARGET_FILE:poolctl>)
  set_tests_properties(test_docs PROPERTIES LABELS "unit;docs" TIMEOUT 60)
endif()
