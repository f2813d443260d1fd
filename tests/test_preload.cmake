# SPDX-License-Identifier: MIT
# test_preload: libpoolclient-preload.so's malloc family, run under it
# (LD_PRELOAD) on an embedded pool (POOLD_SOCKET names no poold). Under
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
    target_compile_options(test_preload PRIVATE -fno-builtin -Wno-use-after-free
                           -Wno-free-nonheap-object -Wno-alloc-size-larger-than)
    set_tests_properties(test_preload PROPERTIES ENVIRONMENT
      "LD_PRELOAD=$<TARGET_FILE:poolclient-preload>;POOLD_SOCKET=/nonexistent/poold.sock;POOL_EMBEDDED_BYTES=64M")
  endif()
endif()
