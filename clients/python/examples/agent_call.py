"""An agent that asks the gateway before each tool call: a dry run of a risky
transfer, a read it then performs against the tool server (examples/
asgi_tool_server.py) with the same token, and a transfer that may need a
human approval, awaited.

Run against `aegis dev` (values from its banner):
  AEGIS_ISSUER=http://127.0.0.1:7400 AEGIS_GATEWAY_URL=http://127.0.0.1:7401 \\
  AEGIS_CLIENT_ID=… AEGIS_CLIENT_SECRET=… python3 examples/agent_call.py

Optional: AEGIS_TOOL_URL (the ASGI tool server, to perform the read),
AEGIS_APPROVAL_TIMEOUT (seconds, default 60), AEGIS_TRANSFER_AMOUNT (2500).
Prints one JSON line per step (never a token).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from aegis_sdk import AegisClient, AegisSdkError  # noqa: E402


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.stderr.write(f"{name} is required (see the banner of `aegis dev`)\n")
        sys.exit(2)
    return value


def log(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def summary(d: Any) -> dict[str, Any]:
    out = {"decision": d["decision"], "enforced": d["enforced"], "reasons": d["reasons"], "policy_version": d.get("policy_version")}
    if d.get("approval"):
        out["approval"] = {"id": d["approval"]["id"], "outcome": d["approval"].get("outcome")}
    return out


def main() -> int:
    client = AegisClient(
        env("AEGIS_ISSUER"), env("AEGIS_CLIENT_ID"), env("AEGIS_CLIENT_SECRET"),
        gateway_url=env("AEGIS_GATEWAY_URL"), scope=["crm:read", "payments:write"],
        # Every decision that was not enforced (dry runs, shadow-mode policies) lands here.
        on_dry_run_decision=lambda d, action: log("would_be", **summary(d)),
    )
    transfer = {"tool": "payments.transfer", "params": {"amount": int(os.environ.get("AEGIS_TRANSFER_AMOUNT", "2500")), "currency": "EUR", "to": "acct-9"}}
    try:
        # 1. What would the gateway say? Nothing is enforced, no approval is opened.
        log("dry_run", **summary(client.authorize(transfer, dry_run=True)))

        # 2. A read, then the call itself through the tool server with the same token.
        read = client.authorize({"tool": "crm.read", "params": {"id": "42"}})
        log("authorize", tool="crm.read", **summary(read))
        tool_url = os.environ.get("AEGIS_TOOL_URL")
        if tool_url and read["decision"] in ("allow", "sanitize"):
            res = client.request("GET", f"{tool_url}/crm/records/42")
            log("tool_call", status=res.status, body=res.json_object())

        # 3. A transfer: if a human must approve, wait; the SDK then repeats
        # exactly this call with the one-time override token.
        paid = client.authorize(transfer, wait_for_approval=True, timeout=float(os.environ.get("AEGIS_APPROVAL_TIMEOUT", "60")))
        log("authorize", tool=transfer["tool"], **summary(paid))
        return 0
    except AegisSdkError as err:
        # SDK errors carry an OAuth code and status, never a token or secret.
        log("error", code=err.code, status=err.status, message=str(err))
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
