# The plugin SDK's tests: fixture plugins, the host-table unit test and the
# end-to-end tests (refusals, crashes, params, cancel, the installed SDK).
# Included from tests/CMakeLists.txt.
#
# Fixtures are MODULE libraries in BUILD/fixtures/plugins, never in
# BUILD/plugins: farm must not find them unless a test points at them.
set(FARM_SDK_FIXTURES ${PROJECT_BINARY_DIR}/fixtures/plugins)
set(_sdk_fx ${CMAKE_CURRENT_SOURCE_DIR}/unit/fixtures/plugins)

# farm_sdk_fixture(TARGET FILE_NAME SUBDIR SOURCE [DEFS...]): FILE_NAME.so
# from SOURCE into FARM_SDK_FIXTURES/SUBDIR ("." for the top).
function(farm_sdk_fixture target file subdir source)
  add_library(${target} MODULE ${source})
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME ${file} C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${FARM_SDK_FIXTURES}/${subdir})
  target_compile_definitions(${target} PRIVATE ${ARGN})
  target_link_libraries(${target} PRIVATE farm::plugin_sdk farm_options)
  add_dependencies(farm_sdk_fixtures ${target})
endfunction()

add_custom_target(farm_sdk_fixtures)
foreach(f ok noentry abimajor short misnamed newer probe segv abort exit hang flood hostio)
  farm_sdk_fixture(sdkfx_${f} ${f} . ${_sdk_fx}/${f}.c)
endforeach()
# Valid twins of the refusal cases (same file name, a plugin that loads), for
# tests that queue a good plugin and break it before it runs.
foreach(f noentry abimajor short misnamed ctorraise ctorhang)
  farm_sdk_fixture(sdkfx_twin_${f} ${f} twins ${_sdk_fx}/ok.c FX_NAME="${f}")
endforeach()
# Plugins that misbehave while they load (ctor.c: FX_CTOR says how).
set(_ctor_n 0)
foreach(f ctorprint ctorsegv ctorhang ctorraise ctorsig)
  math(EXPR _ctor_n "${_ctor_n} + 1")
  farm_sdk_fixture(sdkfx_${f} ${f} . ${_sdk_fx}/ctor.c FX_CTOR=${_ctor_n} FX_NAME="${f}")
endforeach()
# A plugin whose name breaks the name rule ([a-z0-9_-], 1 to 64), and one
# whose parameter table is refused.
farm_sdk_fixture(sdkfx_badname Upper badname ${_sdk_fx}/ok.c FX_NAME="Upper")
farm_sdk_fixture(sdkfx_badparam badparam badname ${_sdk_fx}/ok.c FX_NAME="badparam" FX_BADPARAM)
# Texts farm cannot show or carry: a parameter name that is not UTF-8, a
# summary of two lines. And a parameter type newer than this farm (taken).
farm_sdk_fixture(sdkfx_badutf8 badutf8 badname ${_sdk_fx}/ok.c FX_NAME="badutf8" FX_BADUTF8)
farm_sdk_fixture(sdkfx_twolines twolines badname ${_sdk_fx}/ok.c FX_NAME="twolines" FX_TWOLINES)
farm_sdk_fixture(sdkfx_newtype newtype . ${_sdk_fx}/ok.c FX_NAME="newtype" FX_NEWTYPE)
# A valid plugin named like the built-in exec: refused from $FARM_HOME/plugins.
farm_sdk_fixture(sdkfx_clash_exec exec clash ${_sdk_fx}/ok.c FX_NAME="exec")
# The example plugin, built in tree too, for the params and cancel tests.
farm_sdk_fixture(sdkfx_hello hello . ${PROJECT_SOURCE_DIR}/examples/plugin-hello/hello.c)

farm_add_unit_test(test_sdk_host SOURCES unit/test_sdk_host.c LIBS farm_core TIMEOUT 60)
add_dependencies(test_sdk_host farm_sdk_fixtures)

foreach(t refuse crash params cancel)
  farm_add_e2e_test(e2e_sdk_${t} SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/sdk_${t}.sh TIMEOUT 120)
endforeach()
# Installs the build into a temporary prefix and builds plugins out of tree.
farm_add_e2e_test(e2e_sdk_install SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/sdk_install.sh
                  TIMEOUT 300)
