# CPack: one Debian package, casecore_<version>_<arch>.deb, with the runtime (shared libraries,
# LICENSE, the casecore command line when CASECORE_BUILD_TOOLS) and the development files (headers,
# CMake package, casecore.pc). Build it from a shared build installed under /usr (docs/packaging.md):
#   cmake -S . -B build/deb -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build/deb -j2 && (cd build/deb && cpack)
#   sudo apt install ./build/deb/casecore_*.deb
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME casecore)
set(CPACK_PACKAGE_VENDOR "The casecore authors")
set(CPACK_PACKAGE_CONTACT "The casecore authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # casecore_0.2.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# The shared libraries' own dependencies (libsqlite3-0, libpqxx-6.4, libboost-thread, libssl3, libdate-tz3,
# libstdc++6), as dpkg-shlibdeps finds them; the public headers need nothing beyond the C++ compiler.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # shlibs file and the ldconfig trigger
if(NOT BUILD_SHARED_LIBS)
  # A static build's package must bring what its archives link (the -dev packages).
  set(casecore_deb_depends "libsqlite3-dev, libsqlitecpp-dev, libboost-thread-dev, libssl-dev, libhowardhinnant-date-dev")
  if(CASECORE_WITH_POSTGRES)
    string(APPEND casecore_deb_depends ", libpqxx-dev, pkg-config")
  endif()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "${casecore_deb_depends}")
endif()
include(CPack)
