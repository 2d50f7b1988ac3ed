# The Grafana dashboard and the Prometheus alert rules (deploy/grafana, deploy/prometheus):
# promtool checks and unit-tests the rules, then a real Prometheus scrapes `ingestd run` (the
# simulator, a fresh database in $INGESTD_TEST_DATABASE_URL's server, or a throwaway cluster
# when it is unset) and every dashboard and rule expression is evaluated; the ones that
# describe a synced pipeline must have data, and a quarantined file must fire its alert
# (observability_test.sh says what it protects). No Prometheus: skipped (77), failed under $CI.
# About 20 s.
add_test(NAME "deploy: dashboard and alert rules evaluate against a real Prometheus scraping ingestd run"
         COMMAND bash "${PROJECT_SOURCE_DIR}/tests/deploy/observability_test.sh" "${PROJECT_BINARY_DIR}")
set_tests_properties("deploy: dashboard and alert rules evaluate against a real Prometheus scraping ingestd run"
                     PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS deploy)
