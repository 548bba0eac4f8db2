# forge_test_binary(TARGET): a test executable's own sources build without
# optimisation. They only drive the code under test, which keeps its build
# type's (or the sanitizer build's) optimisation, and half the objects CI
# compiles (twice) are tests: at -O0 each builds in about half the time.
function(forge_test_binary target)
  target_compile_options(${target} PRIVATE -O0)
endfunction()

# forge_component(NAME DIR DEPS...): a static library from DIR/*.cc (minus
# *_test.cc and main.cc) and, when tests are on, one gtest binary from
# DIR/*_test.cc linked against it. Globs keep each component's CMakeLists
# one line; CONFIGURE_DEPENDS re-globs when files are added.
function(forge_component name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  list(FILTER srcs EXCLUDE REGEX "(_test|/main)\\.cc$")
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
    target_compile_definitions(${name} PUBLIC FORGE_VERSION="${PROJECT_VERSION}")
  else()  # a component whose sources are not written yet
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
    target_compile_definitions(${name} INTERFACE FORGE_VERSION="${PROJECT_VERSION}")
  endif()
  if(FORGE_BUILD_TESTS)
    file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
    if(tests)
      add_executable(${name}_test ${tests})
      forge_test_binary(${name}_test)
      target_link_libraries(${name}_test PRIVATE ${name} GTest::gtest GTest::gmock GTest::gtest_main)
      gtest_discover_tests(${name}_test DISCOVERY_MODE PRE_TEST
                           PROPERTIES LABELS unit TIMEOUT 120)
    endif()
  endif()
endfunction()

# forge_program(BINARY LIB): a thin main() (DIR/main.cc) over its library.
function(forge_program binary lib)
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/main.cc)
    return()
  endif()
  add_executable(${binary} ${CMAKE_CURRENT_SOURCE_DIR}/main.cc)
  target_link_libraries(${binary} PRIVATE ${lib})
  install(TARGETS ${binary} RUNTIME DESTINATION bin)
endfunction()
