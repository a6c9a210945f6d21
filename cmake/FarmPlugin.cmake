# farm_add_plugin(NAME SOURCES src... [LIBS lib...])
# Builds NAME.so as a MODULE library into the build tree's plugin directory and
# installs it into lib/farm/plugins. Plugins see only the SDK header (and the
# static libraries named in LIBS, such as farm_nn).
function(farm_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${FARM_PLUGIN_BUILD_DIR})
  target_link_libraries(${name} PRIVATE farm::plugin_sdk farm_options ${P_LIBS})
  # A plugin exports farm_plugin_v1 and nothing else: the static libraries it
  # links (plugins/nn, its own core) stay private to it.
  target_link_options(${name} PRIVATE -Wl,--exclude-libs,ALL)
  if(NOT FARM_SANITIZE)
    target_link_options(${name} PRIVATE -Wl,-z,defs)
  endif()
  install(TARGETS ${name} LIBRARY DESTINATION ${FARM_PLUGIN_INSTALL_DIR})
endfunction()
