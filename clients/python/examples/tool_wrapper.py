"""A LangChain-style tool, written without LangChain: a plain Python function
with a name, a description and a JSON Schema for its arguments, which any
agent framework can call (LangChain's ``StructuredTool.from_function``,
LlamaIndex's ``FunctionTool``, OpenAI function calling…). Every call first
asks the Aegis gateway; only ``allow`` / ``sanitize`` reach the tool, with
the sanitized parameters, and an approval is awaited when a human must
decide.

    client = AegisClient(issuer, client_id, client_secret, gateway_url=gateway)
    lookup = aegis_tool(client, "crm.read", "Look up a CRM record by id",
                        {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                        call=lambda params: http_get(f"{tool_url}/crm/records/{params['id']}"))
    lookup(id="42")           # -> the tool's answer, or a refusal the model can read

Run: AEGIS_ISSUER=… AEGIS_GATEWAY_URL=… AEGIS_CLIENT_ID=… AEGIS_CLIENT_SECRET=… \\
     [AEGIS_TOOL_URL=…] python3 examples/tool_wrapper.py
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from aegis_sdk import AegisClient, AegisSdkError  # noqa: E402


class ToolRefused(Exception):
    """The gateway did not allow the call; the message is safe to show a model."""


def aegis_tool(
    client: AegisClient,
    tool: str,
    description: str,
    parameters: dict[str, Any],
    call: Callable[[dict[str, Any]], Any],
    *,
    wait_for_approval: bool = True,
    approval_timeout: float = 300.0,
) -> Callable[..., Any]:
    """A callable tool named ``tool`` that is decided by Aegis before ``call`` runs."""

    def run(**kwargs: Any) -> Any:
        decision = client.authorize({"tool": tool, "params": kwargs}, wait_for_approval=wait_for_approval, timeout=approval_timeout)
        if decision["decision"] not in ("allow", "sanitize"):
            outcome = (decision.get("approval") or {}).get("outcome")
            raise ToolRefused(f"{tool} was {decision['decision']}" + (f" ({outcome})" if outcome else "") + f": {'; '.join(decision['reasons'])}")
        # sanitize: the tool gets the redacted parameters, never the originals.
        return call(decision.get("params", kwargs))

    run.__name__ = tool.replace(".", "_")
    run.__doc__ = description
    # What frameworks read to describe the tool to a model.
    run.name = tool  # type: ignore[attr-defined]
    run.description = description  # type: ignore[attr-defined]
    run.args_schema = parameters  # type: ignore[attr-defined]
    return run


def main() -> int:
    client = AegisClient(os.environ["AEGIS_ISSUER"], os.environ["AEGIS_CLIENT_ID"], os.environ["AEGIS_CLIENT_SECRET"],
                         gateway_url=os.environ["AEGIS_GATEWAY_URL"])
    tool_url = os.environ.get("AEGIS_TOOL_URL")

    def fetch_record(params: dict[str, Any]) -> Any:
        if not tool_url:
            return {"id": params["id"], "note": "no AEGIS_TOOL_URL: allowed, not performed"}
        res = client.request("GET", f"{tool_url}/crm/records/{params['id']}")
        return res.json_object()

    lookup = aegis_tool(client, "crm.read", "Look up a CRM record by id",
                        {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}, fetch_record)
    delete = aegis_tool(client, "crm.delete", "Delete a CRM record", {"type": "object", "properties": {"id": {"type": "string"}}},
                        lambda p: {"deleted": p["id"]}, wait_for_approval=False)
    try:
        print(json.dumps({"tool": lookup.name, "schema": lookup.args_schema, "result": lookup(id="42")}), flush=True)  # type: ignore[attr-defined]
        try:
            delete(id="42")
            print(json.dumps({"tool": "crm.delete", "result": "performed"}), flush=True)
        except ToolRefused as refusal:
            # An agent framework hands this text back to the model as the tool's answer.
            print(json.dumps({"tool": "crm.delete", "refused": str(refusal)}), flush=True)
        return 0
    except AegisSdkError as err:
        print(json.dumps({"error": err.code, "message": str(err)}), flush=True)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
