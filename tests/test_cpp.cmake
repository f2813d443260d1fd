# The C++ binding (include/poolclient.hpp): a C++17 program on cmocka, on an
# embedded pool and, when poold is built, on a live poold.
if(CMAKE_CXX_COMPILER)
  pool_add_test(test_cpp SOURCES test_cpp.cpp LABELS "unit;cpp" LIBS poolclient)
  set_target_properties(test_cpp PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON
                                            CXX_EXTENSIONS OFF)
  if(TARGET poold)
    target_compile_definitions(test_cpp PRIVATE POOLD_BIN="$<TARGET_FILE:poold>")
    add_dependencies(test_cpp poold)
  endif()
endif()
