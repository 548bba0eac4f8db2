# Installation layout (cmake --install, the .deb): binaries in bin/, the
# default briefs and example config in share/forge/, units in lib/systemd/.
# The worker finds its briefs at <bin>/../share/forge/briefs.
include(GNUInstallDirs)

set(FORGE_BIN_DIR ${CMAKE_INSTALL_FULL_BINDIR})
set(FORGE_DOC_DIR ${CMAKE_INSTALL_FULL_DOCDIR})
configure_file(deploy/forge-supervisor.service.in ${PROJECT_BINARY_DIR}/deploy/forge-supervisor.service @ONLY)
configure_file(deploy/forge-supervisor.user.service.in ${PROJECT_BINARY_DIR}/deploy/user/forge-supervisor.service @ONLY)

install(DIRECTORY briefs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/forge/briefs FILES_MATCHING PATTERN "*.mustache")
install(FILES examples/forge.yaml DESTINATION ${CMAKE_INSTALL_DATADIR}/forge OPTIONAL)
install(DIRECTORY examples/demo/ DESTINATION ${CMAKE_INSTALL_DATADIR}/forge/demo USE_SOURCE_PERMISSIONS OPTIONAL)
install(FILES ${PROJECT_BINARY_DIR}/deploy/forge-supervisor.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_BINARY_DIR}/deploy/user/forge-supervisor.service DESTINATION lib/systemd/user)
# Copied to /etc/logrotate.d/forge by the operator (docs/deploy.md); an
# absolute install path would break installs into a prefix.
install(FILES deploy/forge.logrotate DESTINATION ${CMAKE_INSTALL_DATADIR}/forge)
if(EXISTS ${PROJECT_SOURCE_DIR}/deploy/forge-ctl.bash-completion)
  install(FILES deploy/forge-ctl.bash-completion DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME forge-ctl)
endif()
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")

# .deb via CPack: runtime library dependencies are computed by dpkg-shlibdeps;
# git is what workspaces need at run time.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME forge)
set(CPACK_PACKAGE_CONTACT "Forge maintainers <forge@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Supervisor that runs autonomous coding agents unattended")
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "git")
# The units name the binaries by absolute path: configure with
# -DCMAKE_INSTALL_PREFIX=/usr to package.
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
include(CPack)
