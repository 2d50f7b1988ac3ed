# The Debian package (deploy/packaging/): cpack builds it from this build directory, then, as
# root, apt-get installs, checks, removes and purges it (package_test.sh says what it
# protects). Not root: the package is checked and the test skips (77); under $CI it fails.
# It installs into the machine itself, so it runs alone.
add_test(NAME "deploy: .deb builds and installs and purges cleanly"
         COMMAND bash "${PROJECT_SOURCE_DIR}/tests/deploy/package_test.sh" "${PROJECT_BINARY_DIR}")
set_tests_properties("deploy: .deb builds and installs and purges cleanly" PROPERTIES
                     SKIP_RETURN_CODE 77 TIMEOUT 600 RUN_SERIAL TRUE LABELS deploy)
