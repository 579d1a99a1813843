# Install rules: headers, libraries, the CMake package (components sqlite and postgres), casecore.pc,
# LICENSE. docs/packaging.md describes what a consumer finds where.
include(CMakePackageConfigHelpers)
set(casecore_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/casecore)
set(casecore_install_args
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# One export set per component, so that only the postgres component's file names libpqxx.
install(TARGETS casecore_core casecore_sqlite EXPORT casecore-sqlite ${casecore_install_args})
install(EXPORT casecore-sqlite NAMESPACE casecore:: FILE casecore-sqlite-targets.cmake DESTINATION ${casecore_cmake_dir} COMPONENT dev)
if(CASECORE_WITH_POSTGRES)
  install(TARGETS casecore_postgres EXPORT casecore-postgres ${casecore_install_args})
  install(EXPORT casecore-postgres NAMESPACE casecore:: FILE casecore-postgres-targets.cmake DESTINATION ${casecore_cmake_dir} COMPONENT dev)
endif()
install(TARGETS casecore_casecore casecore_testing EXPORT casecore ${casecore_install_args})
install(EXPORT casecore NAMESPACE casecore:: FILE casecore-targets.cmake DESTINATION ${casecore_cmake_dir} COMPONENT dev)

# Headers: the PostgreSQL ones only when that backend is built.
set(casecore_header_excludes)
if(NOT CASECORE_WITH_POSTGRES)
  set(casecore_header_excludes PATTERN postgres EXCLUDE)
endif()
install(DIRECTORY include/casecore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev ${casecore_header_excludes})
if(EXISTS ${CMAKE_CURRENT_BINARY_DIR}/include/casecore)
  install(DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/include/casecore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
endif()

configure_package_config_file(cmake/casecoreConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfig.cmake
  INSTALL_DESTINATION ${casecore_cmake_dir})
# Before 1.0 a minor release may break the API (include/casecore/version.hpp): same minor version only.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/casecoreConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfigVersion.cmake
  DESTINATION ${casecore_cmake_dir} COMPONENT dev)

# pkg-config: casecore.pc is casecore::casecore (every backend built). A static casecore lists what
# its sources use in Libs.private / Requires.private.
set(casecore_pc_cflags "")
set(casecore_pc_requires "")
set(casecore_pc_libs "-lcasecore -lcasecore_sqlite")
set(casecore_pc_requires_private "sqlite3")
set(casecore_pc_libs_private "-lSQLiteCpp -lboost_thread -lcrypto -ldate-tz") # date-tz ships no .pc file
if(CASECORE_WITH_POSTGRES)
  set(casecore_pc_cflags "-DCASECORE_WITH_POSTGRES=1")
  string(APPEND casecore_pc_libs " -lcasecore_postgres")
  string(APPEND casecore_pc_requires_private " libpqxx")
endif()
string(APPEND casecore_pc_libs " -lcasecore_core")
if(NOT BUILD_SHARED_LIBS) # static archives: a consumer links what casecore's sources use
  string(APPEND casecore_pc_cflags " -DCASECORE_STATIC_DEFINE")
  string(APPEND casecore_pc_libs " ${casecore_pc_libs_private}")
  set(casecore_pc_requires "${casecore_pc_requires_private}")
  set(casecore_pc_requires_private "")
else() # shared libraries carry their own dependencies: a consumer needs none of their -dev packages
  set(casecore_pc_requires_private "")
  set(casecore_pc_libs_private "")
endif()
# Relocatable: the prefix is found from the .pc file's own place (cmake --install --prefix, the .deb).
file(RELATIVE_PATH casecore_pc_up /casecore/${CMAKE_INSTALL_LIBDIR}/pkgconfig /casecore)
string(REGEX REPLACE "/$" "" casecore_pc_up "${casecore_pc_up}")
set(casecore_pc_prefix "\${pcfiledir}/${casecore_pc_up}")
configure_file(cmake/casecore.pc.in ${CMAKE_CURRENT_BINARY_DIR}/casecore.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/casecore.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/casecore COMPONENT runtime)
