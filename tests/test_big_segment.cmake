# SPDX-License-Identifier: MIT
# test_big_segment: poold answers within 1 s with a 2 GiB segment and
# --prefault all (its prefault runs in the background) and stops at once
# while it runs. Needs
# 2 GiB free in /dev/shm, else fails. A sanitizer runtime adds its own work
# per mapping at start (TSan: about 0.7 s for 2 GiB), so those builds allow
# 2.5 s, still well under the prefault's 3.5 s. See tests/test_big_segment.sh.
if(TARGET poold AND TARGET poolctl)
  if(POOL_SANITIZE)
    set(_ping_ms 2500)
  else()
    set(_ping_ms 1000)
  endif()
  add_test(NAME test_big_segment
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_big_segment.sh $<TARGET_FILE:poold>
                   $<TARGET_FILE:poolctl> ${_ping_ms})
  set_tests_properties(test_big_segment PROPERTIES LABELS "integration;daemon" TIMEOUT 180)
endif()
