# SPDX-License-Identifier: MIT
# test_preload: libpoolclient-preload.so's malloc family, run under it
# (LD_PRELOAD) on an embedded pool (POOLD_SOCKET names no poold, and
# POOLD_PRELOAD_FALLBACK=embedded asks for one). Under
# sanitizers a preload library is not meaningful (the sanitizer's runtime
# must come first and has its own malloc): the test says so and is skipped.
if(TARGET poolclient-preload)
  if(POOL_SANITIZE)
    add_test(NAME test_preload COMMAND sh -c
             "echo 'test_preload: skipped: a preload library under POOL_SANITIZE=${POOL_SANITIZE} is not meaningful'; exit 77")
    set_tests_properties(test_preload PROPERTIES LABELS "unit;preload" SKIP_RETURN_CODE 77)
  else()
    pool_add_test(test_preload SOURCES test_preload.c LABELS "unit;preload" LIBS poolclient)
    add_dependencies(test_preload poolclient-preload)
    # It frees twice, frees inside a block and asks for absurd sizes on
    # purpose: the compiler must not reason about malloc and free.
    target_compile_options(test_preload PRIVATE -fno-builtin -Wno-free-nonheap-object)
    if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
      target_compile_options(test_preload PRIVATE -Wno-use-after-free -Wno-alloc-size-larger-than)
    endif()
    set_tests_properties(test_preload PROPERTIES ENVIRONMENT
      "LD_PRELOAD=$<TARGET_FILE:poolclient-preload>;POOLD_SOCKET=/nonexistent/poold.sock;POOLD_PRELOAD_FALLBACK=embedded;POOLD_EMBEDDED_BYTES=64M")
  endif()
endif()

# Programs no one here wrote, on the preload (tests/preload_programs.sh):
# test_preload_<case>_<mode>. The short form by default (CI); set
# POOL_PRELOAD_LONG=1 in the environment for the long one.
if(TARGET poolclient-preload AND TARGET poold)
  foreach(_case python sqlite redis sigkill)
    foreach(_mode embedded poold)
      if(_case STREQUAL "sigkill" AND _mode STREQUAL "embedded")
        continue() # reclaim after a SIGKILL is poold's job
      endif()
      set(_name test_preload_${_case}_${_mode})
      if(POOL_SANITIZE)
        add_test(NAME ${_name} COMMAND sh -c
                 "echo '${_name}: skipped: a preload library under POOL_SANITIZE=${POOL_SANITIZE} is not meaningful'; exit 77")
      else()
        add_test(NAME ${_name}
                 COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/preload_programs.sh ${_case} ${_mode}
                         $<TARGET_FILE:poolclient-preload> $<TARGET_FILE:poold>
                         $<TARGET_FILE:poolctl>)
      endif()
      set_tests_properties(${_name} PROPERTIES LABELS "integration;preload" TIMEOUT 300
                           SKIP_RETURN_CODE 77)
    endforeach()
  endforeach()
endif()

# Everyday programs and wrapper scripts that exec, preloaded on a live
# poold, outputs compared with plain runs, then the pool's state
# (tests/everyday.sh). Not built under sanitizers, as above.
if(TARGET poolclient-preload AND TARGET poold AND NOT POOL_SANITIZE)
  add_test(NAME test_everyday
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/everyday.sh
                   $<TARGET_FILE:poolclient-preload> $<TARGET_FILE:poold>
                   $<TARGET_FILE:poolctl> $<TARGET_FILE:pool_worker> $<TARGET_FILE:pool_check>)
  set_tests_properties(test_everyday PROPERTIES LABELS "integration;preload" TIMEOUT 300)
endif()
