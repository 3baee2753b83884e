# The installed package: `cmake --install build --prefix P` puts
#   P/bin/peng                          the command
#   P/lib/libpeng_*.a                   the libraries
#   P/include/peng/<folder>/*.h         the public headers (and the generated peng/*.pb.h)
#   P/lib/cmake/peng/                   pengConfig.cmake, its version file and the targets
# so that a program says find_package(peng REQUIRED) and links peng::peng (or a finer target:
# peng::core, peng::parallel, peng::optim, peng::models, peng::checkpoint, peng::telemetry,
# peng::accounting, peng::launch).
#
# Public and internal headers: every `.h` of the library folders is public and installed,
# except those under a `commands/` folder (the peng command line) and the CUDA kernels'
# bodies (`core/cuda/kernels/*.cuh`, device code compiled into the library); the NCCL
# communicator's (`parallel/nccl/`) only in a build with NCCL.
include(CMakePackageConfigHelpers)

get_property(peng_targets GLOBAL PROPERTY PENG_EXPORTED_TARGETS)
install(TARGETS ${peng_targets} EXPORT pengTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The command, exported as peng::cli (launch/CMakeLists.txt): $<TARGET_FILE:peng::cli>.
install(TARGETS peng EXPORT pengTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The NCCL communicator's header needs nccl.h: installed only when NCCL was built.
if(NOT PENG_WITH_NCCL)
  set(peng_skip_nccl PATTERN "nccl" EXCLUDE)
endif()
foreach(dir accounting checkpoint core launch models optim parallel telemetry)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/peng/${dir}
          FILES_MATCHING PATTERN "*.h" PATTERN "commands" EXCLUDE PATTERN "kernels" EXCLUDE
          ${peng_skip_nccl})
endforeach()
install(DIRECTORY ${PROJECT_BINARY_DIR}/proto/peng/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/peng
        FILES_MATCHING PATTERN "*.pb.h")

set(PENG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/peng)
install(EXPORT pengTargets NAMESPACE peng:: DESTINATION ${PENG_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/pengConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/pengConfig.cmake
                              INSTALL_DESTINATION ${PENG_CMAKE_DIR}
                              PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
# 0.x: a minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pengConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pengConfig.cmake ${PROJECT_BINARY_DIR}/pengConfigVersion.cmake
        DESTINATION ${PENG_CMAKE_DIR})
