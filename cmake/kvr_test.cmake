# kvr_add_test(name SOURCES ... LIBS ... LABELS ... [TIMEOUT s] [ARGS ...])
# One executable per test; exit code 77 means "skipped" (no GPU, no MPI, no reference).
function(kvr_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  target_compile_options(${name} PRIVATE -UNDEBUG)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  # Tests find the real model through KVR_MODEL (scripts/fetch-model links it under models/);
  # scripts/test sets KVR_REQUIRE_MODEL=1 so a missing model fails instead of skipping.
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" SKIP_RETURN_CODE 77
                       TIMEOUT ${T_TIMEOUT} WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
                       ENVIRONMENT "KVR_MODEL=${PROJECT_SOURCE_DIR}/models/SmolLM2-135M-Instruct.Q4_1.gguf")
endfunction()
