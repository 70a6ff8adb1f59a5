"""A tool server that trusts Aegis tokens, with no web framework: a plain
ASGI app behind :class:`aegis_sdk.middleware.AegisASGIMiddleware` (local
verification: JWKS fetched once and cached, Ed25519 checked in-process).

Any ASGI server runs it (``uvicorn asgi_tool_server:app``); so that the
example needs nothing beyond the standard library and ``cryptography``, it
also carries a minimal HTTP/1.1 server (``python3 asgi_tool_server.py``):
enough for this example and its test, not for production.

Env: AEGIS_ISSUER (required), AEGIS_AUDIENCE (default aegis-gateway),
TOOL_PORT (default 7410; 0 picks a free port). Prints one JSON line
``{"listening": "<url>"}`` when ready.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Awaitable, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from aegis_sdk.middleware import AegisASGIMiddleware  # noqa: E402
from aegis_sdk.verify import Verifier  # noqa: E402

RECORDS = {"42": {"id": "42", "name": "Ada Lovelace", "tier": "gold"}}

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_json(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def tools(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/healthz":
        return await send_json(send, 200, {"ok": True})
    if scope["method"] == "GET" and path.startswith("/crm/records/"):
        claims = scope["aegis"].claims  # set by the middleware: a verified token
        record = RECORDS.get(path[len("/crm/records/"):])
        if record is None:
            return await send_json(send, 404, {"error": "not_found", "error_description": "no such record"})
        return await send_json(send, 200, {"record": record, "served_to": {"agent_id": claims.get("agent_id"), "tenant": claims.get("tenant")}})
    await send_json(send, 404, {"error": "not_found", "error_description": "no such route"})


def make_app(issuer: str, audience: str = "aegis-gateway") -> AegisASGIMiddleware:
    verifier = Verifier(issuer, audience)
    return AegisASGIMiddleware(tools, verifier, required_scopes=["crm:read"], public_paths=["/healthz"])


app = make_app(os.environ["AEGIS_ISSUER"], os.environ.get("AEGIS_AUDIENCE", "aegis-gateway")) if os.environ.get("AEGIS_ISSUER") else None


async def serve(asgi: Any, host: str, port: int) -> None:
    """One request per connection, Content-Length bodies only."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = [(k.strip().lower().encode("latin-1"), v.strip().encode("latin-1")) for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)]
            length = int(dict(headers).get(b"content-length", b"0"))
            body = await reader.readexactly(length) if length else b""
            path, _, query = target.partition("?")
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
                     "raw_path": path.encode(), "query_string": query.encode(), "headers": headers, "scheme": "http",
                     "server": (host, port), "client": writer.get_extra_info("peername")}
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    writer.write(f"HTTP/1.1 {message['status']} X\r\n".encode())
                    for k, v in message.get("headers", []):
                        writer.write(k + b": " + v + b"\r\n")
                    writer.write(b"connection: close\r\n\r\n")
                elif message["type"] == "http.response.body":
                    writer.write(message.get("body", b""))

            await asgi(scope, receive, send)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"listening": f"http://{host}:{bound}"}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if app is None:
        sys.stderr.write("AEGIS_ISSUER is required (the control plane URL printed by `aegis dev`)\n")
        sys.exit(2)
    try:
        asyncio.run(serve(app, "127.0.0.1", int(os.environ.get("TOOL_PORT", "7410"))))
    except KeyboardInterrupt:
        pass
