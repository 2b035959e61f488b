# Install rules and the Debian package (scripts/package). Paths under /etc and the paths the
# systemd unit names are worked out when installing, not when configuring, so that
# `cmake --install build --prefix /usr` and the package (prefix /usr) both get /etc and /usr/bin,
# and the default prefix /usr/local gets /usr/local/etc and /usr/local/bin (systemd reads units
# from /usr/local/lib/systemd/system too).
include(GNUInstallDirs)

install(TARGETS shoal RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Where the example pod specs expect it: /usr/lib/shoal/shoal-test-guest.elf.
install(TARGETS shoal-test-guest RUNTIME DESTINATION lib/shoal)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
# What Debian's tools expect of a package: a changelog, and overrides for what lintian flags
# on purpose (a freestanding guest kernel is static; shoal is not PIE, see CMakeLists.txt).
add_custom_command(OUTPUT changelog.gz
  COMMAND gzip -9n -c ${PROJECT_SOURCE_DIR}/configs/debian/changelog > changelog.gz
  DEPENDS ${PROJECT_SOURCE_DIR}/configs/debian/changelog VERBATIM)
add_custom_target(shoal-changelog ALL DEPENDS changelog.gz)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES configs/debian/lintian-overrides DESTINATION share/lintian/overrides RENAME shoal)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")
file(GLOB shoal_example_specs ${PROJECT_SOURCE_DIR}/configs/*.yaml)
install(FILES ${shoal_example_specs} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The man page, from the --help texts (scripts/man-page: help2man, from Debian's archive).
find_program(HELP2MAN help2man)
# Not in sanitizer builds: it runs the instrumented binary at build time.
if(HELP2MAN AND NOT SHOAL_SANITIZE)
  add_custom_command(OUTPUT shoal.1.gz
    COMMAND ${PROJECT_SOURCE_DIR}/scripts/man-page $<TARGET_FILE:shoal> shoal.1.gz
    DEPENDS shoal ${PROJECT_SOURCE_DIR}/docs/shoal.h2m ${PROJECT_SOURCE_DIR}/scripts/man-page
    VERBATIM)
  add_custom_target(shoal-man ALL DEPENDS shoal.1.gz)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/shoal.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "no man page (help2man missing, scripts/setup installs it, or a sanitizer build)")
endif()

install(CODE "
  set(prefix \"\${CMAKE_INSTALL_PREFIX}\")
  if(prefix STREQUAL \"/usr\" OR prefix STREQUAL \"/\")
    set(SYSCONFDIR /etc)
  else()
    set(SYSCONFDIR \"\${prefix}/etc\")
  endif()
  set(BINDIR \"\${prefix}/${CMAKE_INSTALL_BINDIR}\")
  set(DOCDIR \"\${prefix}/${CMAKE_INSTALL_DOCDIR}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/configs/systemd/shoal-node.service.in\"
    \"${CMAKE_CURRENT_BINARY_DIR}/install/shoal-node.service\" @ONLY)
  file(INSTALL \"${CMAKE_CURRENT_BINARY_DIR}/install/shoal-node.service\"
    DESTINATION \"\${prefix}/lib/systemd/system\")
  # Settings an administrator may have edited stay (the package's conffile handling does the
  # same); CPack's staging directory is always empty.
  if(NOT EXISTS \"\$ENV{DESTDIR}\${SYSCONFDIR}/default/shoal-node\")
    file(INSTALL \"${PROJECT_SOURCE_DIR}/configs/systemd/shoal-node.default\"
      DESTINATION \"\${SYSCONFDIR}/default\" RENAME shoal-node)
  endif()
")

# The Debian package: scripts/package runs cpack on the build directory.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME shoal)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "virtual machine monitor that runs one guest across several hosts")
set(CPACK_PACKAGE_DESCRIPTION
  "shoal runs one unmodified guest on KVM across several Linux hosts, with\n\
no kernel patch: guest memory moves between the hosts on demand over TCP,\n\
and vCPUs move to their pages. This package holds the shoal binary, its\n\
test guest, the shoal-node systemd service (installed but not enabled),\n\
example pod specs and the documentation.")
set(CPACK_PACKAGE_CONTACT "shoal developers <shoal@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# The install code above works out /etc from the prefix: it needs CMAKE_INSTALL_PREFIX=/usr
# and a DESTDIR, not a prefix inside CPack's staging directory.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # libc6 and libibverbs1
# The verbs providers (rxe, mlx5, ...) only where spec.transport is rdma.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "ibverbs-providers")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${PROJECT_SOURCE_DIR}/configs/debian/conffiles;${PROJECT_SOURCE_DIR}/configs/debian/postinst;${PROJECT_SOURCE_DIR}/configs/debian/prerm;${PROJECT_SOURCE_DIR}/configs/debian/postrm")
include(CPack)
