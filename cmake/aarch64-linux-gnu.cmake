# Cross-compile for aarch64 Linux with Debian's g++-aarch64-linux-gnu; the result
# runs under qemu-aarch64 (see .ci/neon.sh).
#   cmake -S . -B build/neon -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(FASTPOOL_CROSS_TRIPLE aarch64-linux-gnu)
set(FASTPOOL_CROSS_ROOT /usr/${FASTPOOL_CROSS_TRIPLE})

if(NOT CMAKE_C_COMPILER)
  set(CMAKE_C_COMPILER ${FASTPOOL_CROSS_TRIPLE}-gcc)
endif()
if(NOT CMAKE_CXX_COMPILER)
  set(CMAKE_CXX_COMPILER ${FASTPOOL_CROSS_TRIPLE}-g++)
endif()

# Libraries and headers from the target's tree only; programs from the host.
set(CMAKE_FIND_ROOT_PATH ${FASTPOOL_CROSS_ROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# try_run and ctest run target binaries through qemu.
find_program(FASTPOOL_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(FASTPOOL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FASTPOOL_QEMU_AARCH64} -L ${FASTPOOL_CROSS_ROOT})
endif()
