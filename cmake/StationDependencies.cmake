# Every dependency comes from Debian's packages (scripts/setup-deps installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)         # shared records (db/shared.hpp)

# The default PKCS#11 module: Debian's SoftHSM2.
set(STATION_DEFAULT_PKCS11_MODULE "/usr/lib/softhsm/libsofthsm2.so" CACHE FILEPATH "Default PKCS#11 module")
