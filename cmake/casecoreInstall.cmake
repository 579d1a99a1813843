include(CMakePackageConfigHelpers)
set(casecore_targets casecore_core casecore_sqlite casecore_casecore casecore_testing)
if(CASECORE_WITH_POSTGRES)
  list(APPEND casecore_targets casecore_postgres)
endif()
install(TARGETS ${casecore_targets} EXPORT casecoreTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/casecore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT casecoreTargets NAMESPACE casecore:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/casecore)
configure_package_config_file(cmake/casecoreConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/casecore)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/casecoreConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/casecoreConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/casecore)
