# farm_add_unit_test(NAME SOURCES src... [LIBS lib...] [LABELS l...] [TIMEOUT s])
# A cmocka test executable, registered with CTest under the label `unit`
# (plus LABELS). Tests get FARM_SOURCE_DIR, FARM_BUILD_DIR and
# FARM_PYTHON (the Debian python3 that has numpy) in their environment.
function(farm_add_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA farm_options ${T_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "unit;${T_LABELS}"
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "FARM_SOURCE_DIR=${PROJECT_SOURCE_DIR};FARM_BUILD_DIR=${PROJECT_BINARY_DIR};FARM_PYTHON=/usr/bin/python3")
endfunction()

# farm_add_e2e_test(NAME SCRIPT path [LABELS l...] [TIMEOUT s])
# An end-to-end test: a shell script driving the real binaries under a
# temporary FARM_HOME (tests/e2e/lib.sh makes and removes it).
function(farm_add_e2e_test name)
  cmake_parse_arguments(T "" "SCRIPT;TIMEOUT" "LABELS" ${ARGN})
  add_test(NAME ${name} COMMAND sh ${T_SCRIPT})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "e2e;${T_LABELS}"
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "FARM_SOURCE_DIR=${PROJECT_SOURCE_DIR};FARM_BUILD_DIR=${PROJECT_BINARY_DIR};FARM_BIN=${PROJECT_BINARY_DIR}/bin;FARM_PYTHON=/usr/bin/python3")
endfunction()
