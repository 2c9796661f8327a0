"""A fake LiveKit server speaking the real Twirp protocol, for tests and local demos.

No LiveKit server can run on our machines, so the real `livekit-api` client is pointed at this
aiohttp app instead. It decodes the same protobuf (or JSON) bodies the server would, checks the
HS256 JWT and its grants the way LiveKit does, keeps state in memory and answers with Twirp
JSON errors `{"code", "msg", "meta"}`. Everything it received is kept in `requests` so tests can
assert on the exact request shape.

In-process (async tests):      async with FakeLiveKit() as fake: ... fake.url ...
Background thread (sync/CLI):  with FakeLiveKit().running() as fake: ... fake.url ...
Standalone process:            python -m tests.support.fake_livekit --port 7880 [--key K --secret S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.api.access_token import Claims, TokenVerifier
from livekit.protocol import agent_dispatch as pb_dispatch
from livekit.protocol import models as pb_models
from livekit.protocol import room as pb_room
from livekit.protocol import sip as pb_sip

# Twirp error code -> HTTP status (twirp spec).
_HTTP_STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "internal": 500,
    "unimplemented": 501,
    "unavailable": 503,
    "deadline_exceeded": 504,
}

# SIP status -> (twirp code, reason phrase, transfer reason) for the transfer failure mode.
SIP_FAILURES: dict[str, tuple[int, str, str, str]] = {
    "busy": (486, "Busy Here", "resource_exhausted", "STR_REJECTED"),
    "no-answer": (480, "Temporarily Unavailable", "deadline_exceeded", "STR_RINGING_TIMEOUT"),
    "timeout": (408, "Request Timeout", "deadline_exceeded", "STR_RINGING_TIMEOUT"),
    "rejected": (603, "Decline", "permission_denied", "STR_REJECTED"),
    "forbidden": (403, "Forbidden", "permission_denied", "STR_REJECTED"),
}


class TwirpError(Exception):
    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.meta = code, msg, meta or {}


@dataclass
class Received:
    """One decoded request, as the server saw it."""

    service: str
    method: str
    request: Message
    claims: Claims


@dataclass
class _Route:
    request_cls: type[Message]
    handler: Callable[[Any, Claims], Message]
    grant: Callable[[Any, Claims], bool]
    grant_name: str


def _sip_admin(_req: Any, c: Claims) -> bool:
    return bool(c.sip and c.sip.admin)


def _sip_call(_req: Any, c: Claims) -> bool:
    return bool(c.sip and c.sip.call)


def _room_admin(room_of: Callable[[Any], str]) -> Callable[[Any, Claims], bool]:
    # LiveKit scopes roomAdmin to the room named in the token.
    def check(req: Any, c: Claims) -> bool:
        return bool(c.video and c.video.room_admin and c.video.room == room_of(req))

    return check


@dataclass
class FakeLiveKit:
    api_key: str = "devkey"
    api_secret: str = "devsecret-devsecret-devsecret-0123"
    inbound: dict[str, pb_sip.SIPInboundTrunkInfo] = field(default_factory=dict)
    outbound: dict[str, pb_sip.SIPOutboundTrunkInfo] = field(default_factory=dict)
    rules: dict[str, pb_sip.SIPDispatchRuleInfo] = field(default_factory=dict)
    rooms: dict[str, pb_models.Room] = field(default_factory=dict)
    participants: dict[str, dict[str, pb_models.ParticipantInfo]] = field(default_factory=dict)
    dispatches: dict[str, pb_dispatch.AgentDispatch] = field(default_factory=dict)
    transfers: list[pb_sip.TransferSIPParticipantRequest] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    # Set to a key of SIP_FAILURES to make TransferSIPParticipant fail like a real trunk would.
    transfer_failure: str | None = None
    # Set to a key of SIP_FAILURES to make an outbound call placed with wait_until_answered
    # (CreateSIPParticipant, e.g. WarmTransferTask dialing the human) fail the same way.
    dial_failure: str | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._routes = self._build_routes()

    # ---------------------------------------------------------------- lifecycle
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/twirp/livekit.{service}/{method}", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{real_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLiveKit:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeLiveKit]:
        """Serve from a background thread (for sync code such as Typer's CliRunner)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        ready.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            t.join(10)
            loop.close()

    # ---------------------------------------------------------------- test helpers
    def calls(self, method: str) -> list[Message]:
        return [r.request for r in self.requests if r.method == method]

    def add_participant(
        self, room: str, identity: str, attributes: dict[str, str] | None = None, sip: bool = True
    ) -> pb_models.ParticipantInfo:
        self._ensure_room(room)
        p = pb_models.ParticipantInfo(
            sid=self._id("PA_"),
            identity=identity,
            state=pb_models.ParticipantInfo.ACTIVE,
            kind=pb_models.ParticipantInfo.SIP if sip else pb_models.ParticipantInfo.STANDARD,
            attributes=attributes or {},
        )
        self.participants[room][identity] = p
        return p

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # ---------------------------------------------------------------- transport
    async def _handle(self, request: web.Request) -> web.Response:
        service, method = request.match_info["service"], request.match_info["method"]
        is_json = request.content_type == "application/json"
        try:
            route = self._routes.get((service, method))
            if route is None:
                raise TwirpError("bad_route", f"no handler for livekit.{service}/{method}")
            claims = self._verify(request.headers.get("Authorization", ""))
            body = await request.read()
            req = route.request_cls()
            try:
                if is_json:
                    json_format.Parse(body or b"{}", req)
                elif request.content_type == "application/protobuf":
                    req.ParseFromString(body)
                else:
                    raise TwirpError("malformed", f"unexpected Content-Type {request.content_type!r}")
            except (DecodeError, json_format.ParseError) as e:
                raise TwirpError("malformed", f"could not decode body: {e}") from None
            self.requests.append(Received(service, method, req, claims))
            if not route.grant(req, claims):
                raise TwirpError("permission_denied", f"requires {route.grant_name} grant")
            resp = route.handler(req, claims)
        except TwirpError as e:
            return web.json_response(
                {"code": e.code, "msg": e.msg, "meta": e.meta}, status=_HTTP_STATUS.get(e.code, 500)
            )
        if is_json:
            return web.Response(body=json_format.MessageToJson(resp), content_type="application/json")
        return web.Response(body=resp.SerializeToString(), content_type="application/protobuf")

    def _verify(self, header: str) -> Claims:
        if not header.startswith("Bearer "):
            raise TwirpError("unauthenticated", "missing bearer token")
        try:
            return TokenVerifier(self.api_key, self.api_secret).verify(header.removeprefix("Bearer "))
        except jwt.PyJWTError as e:
            raise TwirpError("unauthenticated", f"invalid token: {e}") from None

    def _build_routes(self) -> dict[tuple[str, str], _Route]:
        s, r, d = pb_sip, pb_room, pb_dispatch
        admin = (_sip_admin, "sip.admin")
        table: dict[tuple[str, str], tuple[type[Message], Callable[[Any, Claims], Message], Any]] = {
            ("SIP", "CreateSIPInboundTrunk"): (s.CreateSIPInboundTrunkRequest, self._create_in, admin),
            ("SIP", "CreateSIPOutboundTrunk"): (s.CreateSIPOutboundTrunkRequest, self._create_out, admin),
            ("SIP", "UpdateSIPInboundTrunk"): (s.UpdateSIPInboundTrunkRequest, self._update_in, admin),
            ("SIP", "UpdateSIPOutboundTrunk"): (s.UpdateSIPOutboundTrunkRequest, self._update_out, admin),
            ("SIP", "ListSIPInboundTrunk"): (s.ListSIPInboundTrunkRequest, self._list_in, admin),
            ("SIP", "ListSIPOutboundTrunk"): (s.ListSIPOutboundTrunkRequest, self._list_out, admin),
            ("SIP", "DeleteSIPTrunk"): (s.DeleteSIPTrunkRequest, self._delete_trunk, admin),
            ("SIP", "CreateSIPDispatchRule"): (s.CreateSIPDispatchRuleRequest, self._create_rule, admin),
            ("SIP", "UpdateSIPDispatchRule"): (s.UpdateSIPDispatchRuleRequest, self._update_rule, admin),
            ("SIP", "ListSIPDispatchRule"): (s.ListSIPDispatchRuleRequest, self._list_rules, admin),
            ("SIP", "DeleteSIPDispatchRule"): (s.DeleteSIPDispatchRuleRequest, self._delete_rule, admin),
            ("SIP", "CreateSIPParticipant"): (
                s.CreateSIPParticipantRequest,
                self._create_participant,
                (_sip_call, "sip.call"),
            ),
            ("SIP", "TransferSIPParticipant"): (
                s.TransferSIPParticipantRequest,
                self._transfer,
                (
                    lambda q, c: _sip_call(q, c) and _room_admin(lambda x: x.room_name)(q, c),
                    "sip.call + roomAdmin",
                ),
            ),
            ("RoomService", "CreateRoom"): (
                r.CreateRoomRequest,
                self._create_room,
                (lambda q, c: bool(c.video and c.video.room_create), "roomCreate"),
            ),
            ("RoomService", "ListRooms"): (
                r.ListRoomsRequest,
                self._list_rooms,
                (lambda q, c: bool(c.video and c.video.room_list), "roomList"),
            ),
            ("RoomService", "DeleteRoom"): (
                r.DeleteRoomRequest,
                self._delete_room,
                (lambda q, c: bool(c.video and c.video.room_create), "roomCreate"),
            ),
            ("RoomService", "ListParticipants"): (
                r.ListParticipantsRequest,
                self._list_participants,
                (_room_admin(lambda x: x.room), "roomAdmin"),
            ),
            ("RoomService", "MoveParticipant"): (
                r.MoveParticipantRequest,
                self._move_participant,
                (
                    lambda q, c: (
                        _room_admin(lambda x: x.room)(q, c)
                        and bool(c.video and c.video.destination_room == q.destination_room)
                    ),
                    "roomAdmin + destinationRoom",
                ),
            ),
            ("RoomService", "RemoveParticipant"): (
                r.RoomParticipantIdentity,
                self._remove_participant,
                (_room_admin(lambda x: x.room), "roomAdmin"),
            ),
            ("AgentDispatchService", "CreateDispatch"): (
                d.CreateAgentDispatchRequest,
                self._create_dispatch,
                (_room_admin(lambda x: x.room), "roomAdmin"),
            ),
            ("AgentDispatchService", "ListDispatch"): (
                d.ListAgentDispatchRequest,
                self._list_dispatch,
                (_room_admin(lambda x: x.room), "roomAdmin"),
            ),
            ("AgentDispatchService", "DeleteDispatch"): (
                d.DeleteAgentDispatchRequest,
                self._delete_dispatch,
                (_room_admin(lambda x: x.room), "roomAdmin"),
            ),
        }
        return {k: _Route(cls, h, g[0], g[1]) for k, (cls, h, g) in table.items()}

    # ---------------------------------------------------------------- SIP trunks
    def _stamp(self, info: Message, created: bool) -> None:
        now = int(time.time())
        if created:
            info.created_at.seconds = now  # type: ignore[attr-defined]
        info.updated_at.seconds = now  # type: ignore[attr-defined]

    def _create_in(self, req: pb_sip.CreateSIPInboundTrunkRequest, _c: Claims) -> Message:
        t = pb_sip.SIPInboundTrunkInfo()
        t.CopyFrom(req.trunk)
        if not t.numbers and not t.allowed_addresses and not t.auth_username:
            raise TwirpError("invalid_argument", "inbound trunk needs numbers, allowed addresses or auth")
        t.sip_trunk_id = self._id("ST_")
        self._stamp(t, True)
        self.inbound[t.sip_trunk_id] = t
        return t

    def _create_out(self, req: pb_sip.CreateSIPOutboundTrunkRequest, _c: Claims) -> Message:
        t = pb_sip.SIPOutboundTrunkInfo()
        t.CopyFrom(req.trunk)
        if not t.address or not t.numbers:
            raise TwirpError("invalid_argument", "outbound trunk needs an address and numbers")
        t.sip_trunk_id = self._id("ST_")
        self._stamp(t, True)
        self.outbound[t.sip_trunk_id] = t
        return t

    def _update_trunk(self, store: dict[str, Any], req: Any) -> Message:
        cur = store.get(req.sip_trunk_id)
        if cur is None:
            raise TwirpError("not_found", f"trunk {req.sip_trunk_id} not found")
        which = req.WhichOneof("action")
        if which == "replace":
            created = cur.created_at.seconds
            cur.CopyFrom(req.replace)
            cur.sip_trunk_id, cur.created_at.seconds = req.sip_trunk_id, created
        elif which == "update":
            _apply_partial(cur, req.update)
        else:
            raise TwirpError("invalid_argument", "update needs replace or update")
        self._stamp(cur, False)
        return cur

    def _update_in(self, req: pb_sip.UpdateSIPInboundTrunkRequest, _c: Claims) -> Message:
        return self._update_trunk(self.inbound, req)

    def _update_out(self, req: pb_sip.UpdateSIPOutboundTrunkRequest, _c: Claims) -> Message:
        return self._update_trunk(self.outbound, req)

    def _list_in(self, req: pb_sip.ListSIPInboundTrunkRequest, _c: Claims) -> Message:
        items = [t for t in self.inbound.values() if not req.trunk_ids or t.sip_trunk_id in req.trunk_ids]
        return pb_sip.ListSIPInboundTrunkResponse(items=items)

    def _list_out(self, req: pb_sip.ListSIPOutboundTrunkRequest, _c: Claims) -> Message:
        items = [t for t in self.outbound.values() if not req.trunk_ids or t.sip_trunk_id in req.trunk_ids]
        return pb_sip.ListSIPOutboundTrunkResponse(items=items)

    def _delete_trunk(self, req: pb_sip.DeleteSIPTrunkRequest, _c: Claims) -> Message:
        tid = req.sip_trunk_id
        t = self.inbound.pop(tid, None) or self.outbound.pop(tid, None)
        if t is None:
            raise TwirpError("not_found", f"trunk {tid} not found")
        return pb_sip.SIPTrunkInfo(sip_trunk_id=tid, name=t.name, metadata=t.metadata)

    # ---------------------------------------------------------------- dispatch rules
    def _check_trunks(self, ids: Any) -> None:
        for tid in ids:
            if tid not in self.inbound:
                raise TwirpError("invalid_argument", f"unknown inbound trunk {tid}")

    def _create_rule(self, req: pb_sip.CreateSIPDispatchRuleRequest, _c: Claims) -> Message:
        info = pb_sip.SIPDispatchRuleInfo()
        if req.HasField("dispatch_rule"):
            info.CopyFrom(req.dispatch_rule)
        else:  # deprecated flat fields
            info.rule.CopyFrom(req.rule)
            info.trunk_ids.extend(req.trunk_ids)
            info.name, info.metadata = req.name, req.metadata
        if info.rule.WhichOneof("rule") is None:
            raise TwirpError("invalid_argument", "dispatch rule type missing")
        self._check_trunks(info.trunk_ids)
        info.sip_dispatch_rule_id = self._id("SDR_")
        self._stamp(info, True)
        self.rules[info.sip_dispatch_rule_id] = info
        return info

    def _update_rule(self, req: pb_sip.UpdateSIPDispatchRuleRequest, _c: Claims) -> Message:
        cur = self.rules.get(req.sip_dispatch_rule_id)
        if cur is None:
            raise TwirpError("not_found", f"dispatch rule {req.sip_dispatch_rule_id} not found")
        which = req.WhichOneof("action")
        if which == "replace":
            self._check_trunks(req.replace.trunk_ids)
            created = cur.created_at.seconds
            cur.CopyFrom(req.replace)
            cur.sip_dispatch_rule_id, cur.created_at.seconds = req.sip_dispatch_rule_id, created
        elif which == "update":
            _apply_partial(cur, req.update)
        else:
            raise TwirpError("invalid_argument", "update needs replace or update")
        self._stamp(cur, False)
        return cur

    def _list_rules(self, req: pb_sip.ListSIPDispatchRuleRequest, _c: Claims) -> Message:
        items = [
            r
            for r in self.rules.values()
            if (not req.dispatch_rule_ids or r.sip_dispatch_rule_id in req.dispatch_rule_ids)
            and (not req.trunk_ids or set(r.trunk_ids) & set(req.trunk_ids))
        ]
        return pb_sip.ListSIPDispatchRuleResponse(items=items)

    def _delete_rule(self, req: pb_sip.DeleteSIPDispatchRuleRequest, _c: Claims) -> Message:
        r = self.rules.pop(req.sip_dispatch_rule_id, None)
        if r is None:
            raise TwirpError("not_found", f"dispatch rule {req.sip_dispatch_rule_id} not found")
        return r

    # ---------------------------------------------------------------- calls
    def _create_participant(self, req: pb_sip.CreateSIPParticipantRequest, _c: Claims) -> Message:
        trunk = self.outbound.get(req.sip_trunk_id)
        if trunk is None:
            raise TwirpError("not_found", f"outbound trunk {req.sip_trunk_id} not found")
        if not req.sip_call_to or not req.room_name:
            raise TwirpError("invalid_argument", "sip_call_to and room_name are required")
        call_id = self._id("SCL_")
        if self.dial_failure and req.wait_until_answered:
            status, phrase, code, _reason = SIP_FAILURES[self.dial_failure]
            meta = {"sip_status_code": str(status), "sip_status": phrase, "sip_call_id": call_id}
            raise TwirpError(code, f"call to {req.sip_call_to} failed: {status} {phrase}", meta)
        identity = req.participant_identity or f"sip_{req.sip_call_to}"
        attrs = dict(req.participant_attributes)
        attrs.update(
            {
                "sip.callID": call_id,
                "sip.callStatus": "dialing",
                "sip.phoneNumber": req.sip_call_to,
                "sip.trunkID": trunk.sip_trunk_id,
                "sip.trunkPhoneNumber": req.sip_number or trunk.numbers[0],
            }
        )
        p = self.add_participant(req.room_name, identity, attrs)
        p.metadata, p.name = req.participant_metadata, req.participant_name
        return pb_sip.SIPParticipantInfo(
            participant_id=p.sid, participant_identity=identity, room_name=req.room_name, sip_call_id=call_id
        )

    def _transfer(self, req: pb_sip.TransferSIPParticipantRequest, _c: Claims) -> Message:
        self.transfers.append(req)
        p = self.participants.get(req.room_name, {}).get(req.participant_identity)
        if p is None:
            raise TwirpError("not_found", f"participant {req.participant_identity} not in {req.room_name}")
        if p.kind != pb_models.ParticipantInfo.SIP:
            raise TwirpError("failed_precondition", "participant is not a SIP participant")
        if not req.transfer_to.startswith(("tel:", "sip:")):
            raise TwirpError("invalid_argument", "transfer_to must be a tel: or sip: URI")
        tid = self._id("STR_")
        if self.transfer_failure:
            status, phrase, code, reason = SIP_FAILURES[self.transfer_failure]
            meta = {
                "sip_status_code": str(status),
                "sip_status": phrase,
                "sip_transfer_reason": reason,
                "sip_transfer_id": tid,
            }
            raise TwirpError(code, f"transfer failed: {status} {phrase}", meta)
        # The REFER succeeded: the caller leaves the room for the new destination.
        del self.participants[req.room_name][req.participant_identity]
        return pb_sip.TransferSIPParticipantResponse(
            transfer_id=tid,
            status=pb_sip.STS_TRANSFER_SUCCESSFUL,
            reason=pb_sip.STR_COMPLETED,
            sip_status=pb_sip.SIPStatus(code=pb_sip.SIP_STATUS_OK, status="OK"),
        )

    # ---------------------------------------------------------------- rooms & dispatch
    def _ensure_room(self, name: str, metadata: str = "") -> pb_models.Room:
        if name not in self.rooms:
            self.rooms[name] = pb_models.Room(
                sid=self._id("RM_"), name=name, metadata=metadata, creation_time=int(time.time())
            )
            self.participants[name] = {}
        return self.rooms[name]

    def _create_room(self, req: pb_room.CreateRoomRequest, _c: Claims) -> Message:
        room = self._ensure_room(req.name, req.metadata)
        for a in req.agents:
            self._dispatch(req.name, a.agent_name, a.metadata)
        return room

    def _list_rooms(self, req: pb_room.ListRoomsRequest, _c: Claims) -> Message:
        rooms = [r for r in self.rooms.values() if not req.names or r.name in req.names]
        for r in rooms:
            r.num_participants = len(self.participants.get(r.name, {}))
        return pb_room.ListRoomsResponse(rooms=rooms)

    def _delete_room(self, req: pb_room.DeleteRoomRequest, _c: Claims) -> Message:
        if self.rooms.pop(req.room, None) is None:
            raise TwirpError("not_found", f"room {req.room} not found")
        self.participants.pop(req.room, None)
        for k in [k for k, v in self.dispatches.items() if v.room == req.room]:
            del self.dispatches[k]
        return pb_room.DeleteRoomResponse()

    def _list_participants(self, req: pb_room.ListParticipantsRequest, _c: Claims) -> Message:
        return pb_room.ListParticipantsResponse(
            participants=list(self.participants.get(req.room, {}).values())
        )

    def _move_participant(self, req: pb_room.MoveParticipantRequest, _c: Claims) -> Message:
        p = self.participants.get(req.room, {}).pop(req.identity, None)
        if p is None:
            raise TwirpError("not_found", f"participant {req.identity} not in {req.room}")
        if req.destination_room not in self.rooms:
            self.participants[req.room][req.identity] = p
            raise TwirpError("not_found", f"room {req.destination_room} not found")
        self.participants[req.destination_room][req.identity] = p
        return pb_room.MoveParticipantResponse()

    def _remove_participant(self, req: pb_models.RoomParticipantIdentity, _c: Claims) -> Message:
        if self.participants.get(req.room, {}).pop(req.identity, None) is None:
            raise TwirpError("not_found", f"participant {req.identity} not found")
        return pb_room.RemoveParticipantResponse()

    def _dispatch(self, room: str, agent_name: str, metadata: str) -> pb_dispatch.AgentDispatch:
        d = pb_dispatch.AgentDispatch(id=self._id("AD_"), agent_name=agent_name, room=room, metadata=metadata)
        self.dispatches[d.id] = d
        return d

    def _create_dispatch(self, req: pb_dispatch.CreateAgentDispatchRequest, _c: Claims) -> Message:
        if not req.room:
            raise TwirpError("invalid_argument", "room is required")
        self._ensure_room(req.room)
        return self._dispatch(req.room, req.agent_name, req.metadata)

    def _list_dispatch(self, req: pb_dispatch.ListAgentDispatchRequest, _c: Claims) -> Message:
        items = [
            d
            for d in self.dispatches.values()
            if d.room == req.room and (not req.dispatch_id or d.id == req.dispatch_id)
        ]
        return pb_dispatch.ListAgentDispatchResponse(agent_dispatches=items)

    def _delete_dispatch(self, req: pb_dispatch.DeleteAgentDispatchRequest, _c: Claims) -> Message:
        d = self.dispatches.pop(req.dispatch_id, None)
        if d is None or d.room != req.room:
            raise TwirpError("not_found", f"dispatch {req.dispatch_id} not found")
        return d


def _apply_partial(cur: Message, update: Message) -> None:
    """Apply a *Update message: ListUpdate fields set/add/remove, optional scalars overwrite."""
    for fd, value in update.ListFields():
        if fd.message_type is not None and fd.message_type.name == "ListUpdate":
            target = getattr(cur, fd.name)
            items = list(value.set) if value.set else list(target)
            items += [x for x in value.add if x not in items]
            items = [x for x in items if x not in value.remove]
            del target[:]
            target.extend(items)
        elif fd.message_type is not None and not fd.is_repeated:
            getattr(cur, fd.name).CopyFrom(value)
        elif fd.is_repeated:  # map fields (attributes) replace wholesale
            getattr(cur, fd.name).clear()
            getattr(cur, fd.name).update(value)
        else:
            setattr(cur, fd.name, value)


def main() -> None:
    ap = argparse.ArgumentParser(description="Fake LiveKit server (Twirp) for local testing")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7880)
    ap.add_argument("--key", default="devkey")
    ap.add_argument("--secret", default="devsecret-devsecret-devsecret-0123")
    args = ap.parse_args()
    fake = FakeLiveKit(api_key=args.key, api_secret=args.secret)
    print(f"fake LiveKit on http://{args.host}:{args.port} (key={args.key})", flush=True)
    web.run_app(fake.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
