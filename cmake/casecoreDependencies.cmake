# Every dependency comes from a Debian 12 package (scripts/install-deps.sh installs them).
include(GNUInstallDirs)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(SQLiteCpp CONFIG REQUIRED)
find_package(Microsoft.GSL CONFIG REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS thread)
find_package(OpenSSL REQUIRED)
# Time zones of cron schedules (src/cron.cpp): Howard Hinnant's date library, Debian's
# libhowardhinnant-date-dev. Its date::date-tz target is built with USE_OS_TZDB=1 (the OS tzdata in
# /usr/share/zoneinfo, no download) and is the shared libdate-tz.so.3 (package libdate-tz3).
find_package(date CONFIG REQUIRED)
if(CASECORE_WITH_POSTGRES)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
endif()
