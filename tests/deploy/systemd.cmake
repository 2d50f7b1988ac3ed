# The systemd units (deploy/systemd): `systemd-analyze verify` finds nothing about them, each
# service keeps its promises (notify, watchdog, restart limits, user, secrets, stop timeout)
# and `systemd-analyze security --offline=true` rates each at most 4.0 (systemd_test.sh says
# what it protects). Changes nothing on the machine. No systemd-analyze: skipped (77), failed
# under $CI. About 2 s.
add_test(NAME "deploy: systemd units verify cleanly and score at most 4.0 exposure"
         COMMAND bash "${PROJECT_SOURCE_DIR}/tests/deploy/systemd_test.sh" "$<TARGET_FILE_DIR:ingestd>")
set_tests_properties("deploy: systemd units verify cleanly and score at most 4.0 exposure"
                     PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS deploy)
