"""The operator view's HTTP + WebSocket API (aiohttp), over a backend that talks to the
fleet (`operator_node.OperatorNode`; tests may pass another).

    GET  /                          the page
    GET  /api/map                   the map: vertices, lanes, obstacles, stations, bounds
    GET  /api/state                 time, robots (pose, mode, battery, task, reservations
                                    ahead), tasks
    GET  /api/ws                    WebSocket: {"type": "map", ...} once, then
                                    {"type": "state", ...} at `push_hz`
    POST /api/tasks                 submit {"id", "kind", "stations", "priority",
                                    "payload_kg", "deadline_s"} -> 201 {"task_id"}
    POST /api/tasks/{id}/cancel     {"reason"} -> 200 {"ok": true}
    POST /api/robots/{name}/estop   {"engage": true|false} -> 200 {"ok", "message"}
    POST /api/robots/{name}/remove  {"force": false, "reason"} -> 200 {"ok", "released"}

Errors are JSON {"error": "..."} naming the bad input: 400 for a malformed request, 422
when the fleet refuses it (unknown station, unknown task, ...), 503 when the fleet does
not answer. docs/operator-view.md has the details.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from typing import Any, Protocol

from aiohttp import WSMsgType, web

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
KINDS = ("goto", "pick_and_drop", "charge")
log = logging.getLogger(__name__)


class FleetUnavailable(Exception):
    """The fleet service needed for a request did not answer."""


class Refused(Exception):
    """The fleet answered no; the message says why."""


class Backend(Protocol):
    def map_document(self) -> dict[str, Any]: ...
    def state_document(self) -> dict[str, Any]: ...
    async def submit(self, task: dict[str, Any]) -> str: ...
    async def cancel(self, task_id: str, reason: str) -> None: ...
    async def estop(self, robot: str, engage: bool) -> str: ...
    async def remove(self, robot: str, force: bool, reason: str) -> dict[str, Any]: ...


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def dumps(doc: Any) -> str:
    """JSON for the page: NaN and infinities, which JSON has not (the browser's parser
    refuses a whole document for one), become null."""
    try:
        return json.dumps(doc, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(doc), allow_nan=False)


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "request body: expected a JSON "
                                                  "object"}),
                                 content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "request body: expected a JSON "
                                                  f"object, got {type(data).__name__}"}),
                                 content_type="application/json")
    return data


def parse_task(data: dict[str, Any]) -> dict[str, Any]:
    """A submitted task, checked: returns the normalised task or raises ValueError naming
    the field and what was expected. Whether the stations exist is the dispatcher's call."""
    known = {"id", "kind", "stations", "priority", "payload_kg", "deadline_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected {sorted(known)}")
    tid = data.get("id")
    if not isinstance(tid, str) or not tid.strip():
        raise ValueError("id: expected a non-empty string (the task's unique id)")
    kind = data.get("kind", "pick_and_drop")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    stations = data.get("stations")
    if isinstance(stations, str):
        stations = stations.split()
    if (not isinstance(stations, list) or not stations
            or not all(isinstance(s, str) and s for s in stations)):
        raise ValueError("stations: expected a non-empty list of station names")
    need = 2 if kind == "pick_and_drop" else 1
    if len(stations) != need:
        raise ValueError(f"stations: a {kind} task takes {need} station(s) "
                         f"({'PICK DROP' if need == 2 else 'GOAL'}), got {len(stations)}")
    out: dict[str, Any] = {"id": tid.strip(), "kind": kind, "stations": stations}
    for key, typ, lo in (("priority", int, None), ("payload_kg", (int, float), 0.0),
                         ("deadline_s", (int, float), 0.0)):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, typ) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{key}: expected a {'whole ' if typ is int else ''}number, "
                             f"got {value!r}")
        if lo is not None and value < lo:
            raise ValueError(f"{key}: expected >= {lo}, got {value}")
        out[key] = value
    return out


def make_app(backend: Backend, push_hz: float = 4.0) -> web.Application:
    app = web.Application()
    sockets: set[web.WebSocketResponse] = set()

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC, "index.html"))

    async def get_map(_request: web.Request) -> web.Response:
        return web.json_response(backend.map_document(), dumps=dumps)

    async def get_state(_request: web.Request) -> web.Response:
        return web.json_response(backend.state_document(), dumps=dumps)

    async def post_task(request: web.Request) -> web.Response:
        try:
            task = parse_task(await _body(request))
        except ValueError as e:
            return _error(400, str(e))
        try:
            task_id = await backend.submit(task)
        except Refused as e:
            return _error(422, str(e))
        except FleetUnavailable as e:
            return _error(503, str(e))
        return web.json_response({"task_id": task_id}, status=201)

    async def cancel_task(request: web.Request) -> web.Response:
        data = await _body(request)
        reason = data.get("reason", "cancelled from the operator view")
        if not isinstance(reason, str):
            return _error(400, f"reason: expected a string, got {reason!r}")
        try:
            await backend.cancel(request.match_info["task_id"], reason)
        except Refused as e:
            return _error(422, str(e))
        except FleetUnavailable as e:
            return _error(503, str(e))
        return web.json_response({"ok": True})

    async def estop(request: web.Request) -> web.Response:
        data = await _body(request)
        engage = data.get("engage", True)
        if not isinstance(engage, bool):
            return _error(400, f"engage: expected true or false, got {engage!r}")
        try:
            message = await backend.estop(request.match_info["robot"], engage)
        except Refused as e:
            return _error(422, str(e))
        except FleetUnavailable as e:
            return _error(503, str(e))
        return web.json_response({"ok": True, "message": message})

    async def remove(request: web.Request) -> web.Response:
        data = await _body(request)
        force, reason = data.get("force", False), data.get("reason", "removed from the "
                                                                      "operator view")
        if not isinstance(force, bool):
            return _error(400, f"force: expected true or false, got {force!r}")
        if not isinstance(reason, str):
            return _error(400, f"reason: expected a string, got {reason!r}")
        try:
            result = await backend.remove(request.match_info["robot"], force, reason)
        except Refused as e:
            return _error(422, str(e))
        except FleetUnavailable as e:
            return _error(503, str(e))
        return web.json_response({"ok": True, **result})

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        sockets.add(ws)
        try:
            await ws.send_str(dumps({"type": "map", **backend.map_document()}))
            async for msg in ws:   # the page only listens; reading keeps the socket alive
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            sockets.discard(ws)
        return ws

    async def pusher(_app: web.Application):
        loop = asyncio.get_running_loop()
        warned = [-math.inf]

        async def push() -> None:
            while True:
                await asyncio.sleep(1.0 / push_hz)
                if not sockets:
                    continue
                try:
                    text = dumps({"type": "state", **backend.state_document()})
                except Exception as e:  # noqa: BLE001 - the pushes go on
                    # a push that fails must not end the pushing: every open page would
                    # freeze on its last state while it still shows "live"
                    now = loop.time()
                    if now - warned[0] > 10.0:
                        warned[0] = now
                        log.warning("operator view: state not pushed: %s: %s",
                                    type(e).__name__, e)
                    continue
                for ws in list(sockets):
                    try:
                        await ws.send_str(text)
                    except (ConnectionError, RuntimeError):
                        sockets.discard(ws)
        task = loop.create_task(push())
        yield
        task.cancel()
        for ws in list(sockets):
            await ws.close()

    app.cleanup_ctx.append(pusher)
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC)
    app.router.add_get("/api/map", get_map)
    app.router.add_get("/api/state", get_state)
    app.router.add_get("/api/ws", websocket)
    app.router.add_post("/api/tasks", post_task)
    app.router.add_post("/api/tasks/{task_id}/cancel", cancel_task)
    app.router.add_post("/api/robots/{robot}/estop", estop)
    app.router.add_post("/api/robots/{robot}/remove", remove)
    return app
