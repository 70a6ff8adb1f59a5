#!/usr/bin/env bash
# The README's walk-through, step by step, with curl and node (for JSON):
# register an agent, give the tenant the payments policy, trade the secret for
# a token, then an allowed, a replayed, a denied, a sanitized and an approved
# call, and a revocation. Prints each answer.
#
# Against `aegis dev` (npm run dev), with the admin token it printed:
#   ADMIN=aegis_admin_… examples/walkthrough.sh
# CP and GW default to http://127.0.0.1:7400 and http://127.0.0.1:7401.
# Run it once per data directory: the agent billing-bot is revoked at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ADMIN:?set ADMIN to the admin token aegis dev printed}"
CP=${CP:-http://127.0.0.1:7400} GW=${GW:-http://127.0.0.1:7401}

step() { printf '\n== %s\n' "$*"; }
# json FIELD: reads JSON on stdin and prints one field (a.b.c); empty when absent.
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v?.[k];process.stdout.write(v===undefined||v===null?"":typeof v==="string"?v:JSON.stringify(v))})' "$1"; }
authorize() { # authorize TOKEN BODY [extra curl args…]: prints the HTTP status on the last line
  local token=$1 body=$2; shift 2
  curl -s -w '\n%{http_code}' $GW/v1/authorize -H "authorization: Bearer $token" -H 'content-type: application/json' "$@" -d "$body"
}

step "1. Register the agent billing-bot in tenant demo, and a bootstrap credential"
curl -s -X POST $CP/admin/v1/tenants/demo/agents -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' \
  -d '{"agent_id":"billing-bot","scopes":["payments:write"],"capabilities":["payments.transfer","payments.charge"],"max_ttl_seconds":900}'
echo
CRED=$(curl -s -X POST $CP/admin/v1/tenants/demo/agents/billing-bot/bootstrap-credentials \
  -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"ttl_seconds":300,"single_use":true}')
echo "$CRED"
CLIENT_ID=$(echo "$CRED" | json client_id) CLIENT_SECRET=$(echo "$CRED" | json client_secret)

step "2. The payments policy for tenant demo, activated"
POLICY_FILE=$(mktemp)
trap 'rm -f "$POLICY_FILE"' EXIT
node -e 'process.stdout.write(JSON.stringify({version:"2026-11-29.1",mode:"enforce",
  cedar:require("fs").readFileSync("policies/templates/payments/policy.cedar","utf8")}))' > "$POLICY_FILE"
POLICY=$(curl -s -X POST $CP/admin/v1/tenants/demo/policies -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d @"$POLICY_FILE")
echo "$POLICY"
POLICY_ID=$(echo "$POLICY" | json id)
curl -s -X POST $CP/admin/v1/tenants/demo/policies/$POLICY_ID/activate -H "authorization: Bearer $ADMIN"
echo

step "3. The agent trades its secret for a token (client_credentials, client_secret_basic)"
ANSWER=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials $CP/oauth2/token)
echo "$ANSWER"
TOKEN=$(echo "$ANSWER" | json access_token)
echo "the same secret a second time:"
curl -s -w ' %{http_code}\n' -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials $CP/oauth2/token

# The gateway hears of the new bundle over its feed within milliseconds; a dry run (nothing enforced, nothing spent) shows when.
for _ in $(seq 1 100); do
  [ "$(authorize "$TOKEN" '{"action":{"tool":"payments.transfer","params":{"amount":1,"currency":"EUR"}}}' -H 'aegis-dry-run: 1' | head -1 | json policy_version)" = 2026-11-29.1 ] && break
  sleep 0.1
done

step "4. An allowed call"
authorize "$TOKEN" '{"action":{"tool":"payments.transfer","params":{"amount":100,"currency":"EUR"}},"resource":"account:ops"}'
echo

step "The same token for another transfer: refused as a replay (transfers are @risk(\"high\"): single-use jti)"
authorize "$TOKEN" '{"action":{"tool":"payments.transfer","params":{"amount":100,"currency":"EUR"}},"resource":"account:ops"}'
echo

# A second token needs a second credential: the first was single-use. This one may be used again.
CRED=$(curl -s -X POST $CP/admin/v1/tenants/demo/agents/billing-bot/bootstrap-credentials \
  -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"ttl_seconds":300,"single_use":false}')
CLIENT_ID=$(echo "$CRED" | json client_id) CLIENT_SECRET=$(echo "$CRED" | json client_secret)
token() { curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials $CP/oauth2/token | json access_token; }

step "5. A denied call (fresh token)"
TOKEN=$(token)
authorize "$TOKEN" '{"action":{"tool":"payments.transfer","params":{"amount":60000,"currency":"EUR"}},"resource":"account:ops"}'
echo

step "A sanitized call: payments.charge with a card number"
authorize "$TOKEN" '{"action":{"tool":"payments.charge","params":{"amount":25,"card_number":"4111111111111111"}},"resource":"account:ops"}'
echo

step "6. A call that needs an approval (fresh token)"
TOKEN=$(token)
BODY='{"action":{"tool":"payments.transfer","params":{"amount":5000,"currency":"EUR"}},"resource":"account:ops"}'
ANSWER=$(authorize "$TOKEN" "$BODY")
echo "$ANSWER"
APPROVAL=$(echo "$ANSWER" | head -1 | json approval.id)
echo "a person approves it:"
curl -s -X POST $CP/admin/v1/approvals/$APPROVAL/approve -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d '{"reason":"invoice 4711 checked"}'
echo
echo "the agent reads the status URL with its own token:"
STATUS=$(curl -s "$CP/v1/approvals/$APPROVAL" -H "authorization: Bearer $TOKEN")
echo "$STATUS"
OVERRIDE=$(echo "$STATUS" | json override_token)
echo "and repeats the call with the one-time override:"
authorize "$TOKEN" "$BODY" -H "aegis-override: $OVERRIDE"
echo
echo "the same override again (fresh token):"
authorize "$(token)" "$BODY" -H "aegis-override: $OVERRIDE"
echo

step "7. Revoke the agent: every gateway refuses its tokens at once"
TOKEN=$(token)
curl -s -X POST $CP/admin/v1/revocations -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"type":"agent","value":"billing-bot","tenant":"demo","reason":"rotated"}'
echo
sleep 0.2
authorize "$TOKEN" '{"action":{"tool":"payments.transfer","params":{"amount":100,"currency":"EUR"}}}'
echo
