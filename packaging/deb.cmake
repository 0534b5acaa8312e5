# `cpack -G DEB` in a build configured with -DCMAKE_INSTALL_PREFIX=/usr (the paths in the
# unit, kvcache.pc and the Python directory are the configured prefix's; scripts/test.sh
# --stage package does so). Depends: dpkg-shlibdeps finds the Debian package of every
# shared library the programs, libkvcache.so and the Python module load (SQLiteCpp is
# linked in statically: Debian 12 ships it only as a static archive); fuse3 adds
# fusermount3 and mount.fuse3, which kvcachefs runs rather than links.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kvcachefs)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "KV-cache pools in shared memory for LLM inference, a FUSE filesystem and a CLI")
set(CPACK_PACKAGE_DESCRIPTION
    "libkvcache (pools of POSIX shared memory shared by many processes), the kvcachefs FUSE daemon serving pools as files, the cortex cache command, the kvcache Python module, man pages, a pkg-config file, a CMake package and the kvcachefs@.service systemd unit.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "kvcachefs maintainers <kvcachefs@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
# Debug information stays in the build tree; the package ships stripped binaries.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3 (>= 3.11), python3-numpy, man-db")
# A shlibs file and the ldconfig trigger for libkvcache.so.0.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
include(CPack)
