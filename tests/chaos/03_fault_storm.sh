#!/usr/bin/env bash
# 3. Upstream fault storm: 20 % of the data requests fail, drawn at random among every fault
# kind the simulator has (429 with Retry-After, 500, 503, slow beyond the fetcher's timeout,
# truncated body, HTML instead of JSON, GraphQL errors with HTTP 200); OAuth2 tokens live 60 s
# and, once a minute at a random moment, every issued token is revoked early (so the fetcher
# meets a 401 and must refresh, not only renew at 90 % of the token's life). The final full
# sync runs inside the storm too. Proves that retries, backoff, Retry-After and token refresh
# never skip a page nor stop an entity for good.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 03_fault_storm "${1:-}"
RATE="${CHAOS_FAULT_RATE:-20}"
DURATION="${CHAOS_DURATION:-180}"

chaos_pg_start
sim_start --auth oauth2:chaos:s3cret --token-ttl 60 --fault-rate "$RATE" --fault-delay 3000
CFG_TIMEOUT=2s  # the "slow" faults answer after 3 s: beyond it
CFG_PAGE=250    # more requests, more faults (about 900 for the initial sync)
CFG_AUTH="auth: {oauth2: {token_url: \"http://127.0.0.1:$SIM_PORT/oauth/token\", client_id: chaos, client_secret: s3cret}}"
CFG_REST_IN_FLIGHT=3  # faults also hit requests sent ahead and the pages behind them
write_config
start_stages
churn_start $((CHAOS_CHURN_TOTAL / DURATION)) "$CHAOS_CHURN_TOTAL"
end=$(($(date +%s) + DURATION))
expiries=0
while [ "$(date +%s)" -lt "$end" ]; do
  sleep_watch $((20 + RANDOM % 40))
  sim_ctl POST /control/faults '{"kind":"expire_tokens"}' >/dev/null
  expiries=$((expiries + 1))
done
final_sync 1500
stats="$(sim_ctl GET /control/stats)"
log "simulator: $stats"
faulted=$(python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(s["fault_rate"]["injected"].values()))' <<<"$stats")
total=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["total"])' <<<"$stats")
tokens=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["token"])' <<<"$stats")
by_kind=$(python3 -c 'import json,sys; print(",".join(f"{k}:{v}" for k,v in sorted(json.load(sys.stdin)["fault_rate"]["injected"].items())))' <<<"$stats")
got401=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["by_status"].get("401",0))' <<<"$stats")
log "requests $total, faults injected $faulted ($by_kind), 401s $got401, tokens issued $tokens, early expiries $expiries"
if [ "$faulted" -eq 0 ] || [ "$got401" -eq 0 ]; then
  log "the storm did not happen (no fault or no 401 seen)"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
REPORT_EXTRA="requests=$total faults=$faulted faults_by_kind=$by_kind 401s=$got401 tokens=$tokens expiries=$expiries"
compare
report
