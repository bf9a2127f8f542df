# station_library(NAME <part> ALIAS <ns::name> SRCS ... DEPS ... [PRIVATE_DEPS ...])
# One static library per top-level part. Public headers live in <part>/include/<part>/,
# private ones in <part>/src/internal/. DEPS spell the direction of dependency.
function(station_apply_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
  if(STATION_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

function(station_library)
  cmake_parse_arguments(ARG "" "NAME;ALIAS" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${ARG_NAME} STATIC ${ARG_SRCS})
  add_library(${ARG_ALIAS} ALIAS ${ARG_NAME})
  target_include_directories(${ARG_NAME}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  station_apply_warnings(${ARG_NAME})
endfunction()

# station_executable(NAME <exe> SRCS ... DEPS ...)
function(station_executable)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  station_apply_warnings(${ARG_NAME})
endfunction()

# libFuzzer builds instrument every library for coverage and ASan/UBSan, not only the
# fuzz target's own file; the fuzz targets add -fsanitize=fuzzer at link time.
if(STATION_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(STATION_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
