# The demo (deploy/demo.sh) with the binaries of this build directory, without install-deps
# or the build: its own PostgreSQL and simulator, every record reconciled, three changed
# records arriving, status printed, then everything stopped. The script fails with the step
# that went wrong; this protects the README's main command from rotting. ~15 s.
add_test(NAME "deploy: demo.sh mirrors the simulator and shows a change arriving"
         COMMAND bash "${PROJECT_SOURCE_DIR}/deploy/demo.sh" --no-build --exit)
set_tests_properties("deploy: demo.sh mirrors the simulator and shows a change arriving" PROPERTIES
                     ENVIRONMENT "INGESTD_BUILD_DIR=${PROJECT_BINARY_DIR}" TIMEOUT 180 LABELS deploy)
