# Installs the plugin SDK next to the farm binaries (which core/ and cli/
# install themselves, as farm_add_plugin installs the built-in plugins):
#
#   include/farm/plugin.h                            the SDK header
#   LIBDIR/cmake/farm-plugin/farm-plugin-config.cmake    find_package(farm-plugin)
#   LIBDIR/cmake/farm-plugin/farm-plugin-config-version.cmake  (SameMajorVersion)
#   LIBDIR/cmake/farm-plugin/farm-plugin-targets.cmake   target farm::plugin_sdk
#   LIBDIR/pkgconfig/farm-plugin.pc                  pkg-config, with plugindir
#
# The package's version is the plugin ABI version (FARM_PLUGIN_ABI_MAJOR.MINOR
# from plugin.h), not farm's release number: a plugin asks for the ABI it was
# written against, and SameMajorVersion accepts any minor that is not older.
# Everything is relocatable: the config file and the .pc file compute the
# prefix from their own location, so `cmake --install build --prefix DIR`
# into any DIR (or moving the tree later) works.
include(CMakePackageConfigHelpers)

file(STRINGS ${PROJECT_SOURCE_DIR}/include/farm/plugin.h _farm_abi_major
     REGEX "^#define FARM_PLUGIN_ABI_MAJOR [0-9]+")
file(STRINGS ${PROJECT_SOURCE_DIR}/include/farm/plugin.h _farm_abi_minor
     REGEX "^#define FARM_PLUGIN_ABI_MINOR [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" _farm_abi_major "${_farm_abi_major}")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" _farm_abi_minor "${_farm_abi_minor}")
set(FARM_PLUGIN_SDK_VERSION ${_farm_abi_major}.${_farm_abi_minor})

set(_farm_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/farm-plugin)
set(_farm_pcdir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
set(_farm_gen ${PROJECT_BINARY_DIR}/farm-plugin-sdk)

# The header.
install(FILES ${PROJECT_SOURCE_DIR}/include/farm/plugin.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/farm)

# The CMake package: farm_plugin_sdk exported as farm::plugin_sdk.
set_target_properties(farm_plugin_sdk PROPERTIES EXPORT_NAME plugin_sdk)
install(TARGETS farm_plugin_sdk EXPORT farm-plugin-targets)
install(EXPORT farm-plugin-targets NAMESPACE farm:: FILE farm-plugin-targets.cmake
        DESTINATION ${_farm_cmakedir})
set(FARM_PLUGIN_DIR_REL ${FARM_PLUGIN_INSTALL_DIR})
file(WRITE ${_farm_gen}/farm-plugin-config.cmake.in [=[
# farm-plugin: the farm plugin SDK (header only), ABI @FARM_PLUGIN_SDK_VERSION@.
#   find_package(farm-plugin 1.0 REQUIRED)
#   target_link_libraries(myplugin PRIVATE farm::plugin_sdk)
# Sets FARM_PLUGIN_DIR: the installed farm's built-in plugin directory.
@PACKAGE_INIT@
include("${CMAKE_CURRENT_LIST_DIR}/farm-plugin-targets.cmake")
set_and_check(FARM_PLUGIN_INCLUDE_DIR "@PACKAGE_CMAKE_INSTALL_INCLUDEDIR@")
set(FARM_PLUGIN_DIR "@PACKAGE_FARM_PLUGIN_DIR_REL@")
set(FARM_PLUGIN_ABI_MAJOR @_farm_abi_major@)
set(FARM_PLUGIN_ABI_MINOR @_farm_abi_minor@)
check_required_components(farm-plugin)
]=])
configure_package_config_file(${_farm_gen}/farm-plugin-config.cmake.in
  ${_farm_gen}/farm-plugin-config.cmake
  INSTALL_DESTINATION ${_farm_cmakedir}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR FARM_PLUGIN_DIR_REL)
write_basic_package_version_file(${_farm_gen}/farm-plugin-config-version.cmake
  VERSION ${FARM_PLUGIN_SDK_VERSION} COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${_farm_gen}/farm-plugin-config.cmake
              ${_farm_gen}/farm-plugin-config-version.cmake
        DESTINATION ${_farm_cmakedir})

# The pkg-config file: prefix relative to ${pcfiledir}. A directory given as an
# absolute path (CMAKE_INSTALL_LIBDIR=/opt/...) is written as is.
function(_farm_pc_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(_farm_pc_prefix "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _farm_up /farm-prefix/${_farm_pcdir} /farm-prefix)
  string(REGEX REPLACE "/$" "" _farm_up "${_farm_up}")
  set(_farm_pc_prefix "\${pcfiledir}/${_farm_up}")
endif()
_farm_pc_path(_farm_pc_include "${CMAKE_INSTALL_INCLUDEDIR}")
_farm_pc_path(_farm_pc_plugindir "${FARM_PLUGIN_INSTALL_DIR}")
_farm_pc_path(_farm_pc_bindir "${CMAKE_INSTALL_BINDIR}")
file(WRITE ${_farm_gen}/farm-plugin.pc
"prefix=${_farm_pc_prefix}
includedir=${_farm_pc_include}
bindir=${_farm_pc_bindir}
plugindir=${_farm_pc_plugindir}
farmversion=${PROJECT_VERSION}

Name: farm-plugin
Description: farm plugin SDK (header only): execution plugins for farm, ABI ${FARM_PLUGIN_SDK_VERSION}
Version: ${FARM_PLUGIN_SDK_VERSION}
Cflags: -I\${includedir}
")
install(FILES ${_farm_gen}/farm-plugin.pc DESTINATION ${_farm_pcdir})
