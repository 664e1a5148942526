"""A small Durable Task engine for tests: it replays orchestrations through their INDEXED handler.

Histories are built in the extension's out-of-process format (see the azure-functions notes):
episodes start with OrchestratorStarted; activities and timers take sequence ids in scheduling order
(flattened from WhenAny/WhenAll), external-event waits take none. Each episode replays the whole
history, and the actions the orchestrator returns beyond those already handled are the new ones.

`DurableHttp` serves the slice of the extension's local RPC API that DurableOrchestrationClient calls
(start, raise event, status) so the real SDK client, built from a real binding JSON, talks to it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

TS = "%Y-%m-%dT%H:%M:%S.%fZ"
ORCHESTRATOR_STARTED, EXECUTION_STARTED, TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 12, 0, 4, 5, 6
TIMER_CREATED, TIMER_FIRED, EVENT_RAISED, ORCHESTRATOR_COMPLETED = 10, 11, 15, 13
CALL_ACTIVITY, CREATE_TIMER, WAIT_EVENT, WHEN_ANY, WHEN_ALL = 0, 5, 6, 11, 12

Activity = Callable[[Any], Awaitable[Any]]


def ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TS)


def event(kind: int, moment: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {"EventType": kind, "EventId": event_id, "IsPlayed": False, "Timestamp": ts(moment), **fields}


def flatten(actions: list[Any]) -> list[dict[str, Any]]:
    """Atomic actions in scheduling order (compound actions list their new children)."""
    flat: list[dict[str, Any]] = []
    for action in actions:
        if isinstance(action, list):
            flat.extend(flatten(action))
        elif action.get("actionType") in (WHEN_ANY, WHEN_ALL):
            flat.extend(flatten(action.get("compoundActions", [])))
        else:
            flat.append(action)
    return flat


@dataclass
class Instance:
    instance_id: str
    name: str
    input: str | None
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    handled_actions: int = 0
    next_sequence: int = 0
    timers: dict[int, datetime] = field(default_factory=dict)
    activities: list[tuple[int, str, Any]] = field(default_factory=list)
    runtime_status: str = "Pending"
    custom_status: Any = None
    output: Any = None
    error: str | None = None
    episodes: int = 0
    states: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.runtime_status in ("Pending", "Running")


class DurableEngine:
    def __init__(self, orchestrators: dict[str, Callable[[str], str]], activities: dict[str, Activity]) -> None:
        self.orchestrators = orchestrators
        self.activities = activities
        self.instances: dict[str, Instance] = {}
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.activity_calls: list[tuple[str, Any]] = []

    # --- client side ----------------------------------------------------------------------------
    def start(self, name: str, instance_id: str, input_json: str | None) -> bool:
        """NonRunningStates: an active instance is not replaced."""
        existing = self.instances.get(instance_id)
        if existing is not None and existing.active:
            return False
        instance = Instance(instance_id, name, input_json)
        instance.inbox.append(
            event(
                EXECUTION_STARTED,
                self.now(),
                Name=name,
                Input=input_json,
                OrchestrationInstance={"InstanceId": instance_id},
                Version="",
            )
        )
        self.instances[instance_id] = instance
        return True

    def raise_event(self, instance_id: str, name: str, data_json: str) -> int:
        instance = self.instances.get(instance_id)
        if instance is None:
            return 404
        if not instance.active:
            return 410
        instance.inbox.append(event(EVENT_RAISED, self.now(), Name=name, Input=data_json))
        return 202

    # --- execution --------------------------------------------------------------------------------
    def context_json(self, instance: Instance, history: list[dict[str, Any]]) -> str:
        return json.dumps(
            {
                "history": history,
                "instanceId": instance.instance_id,
                "isReplaying": False,
                "parentInstanceId": None,
                "input": instance.input,
                "upperSchemaVersion": 1,
            }
        )

    def episode(self, instance: Instance) -> dict[str, Any]:
        """Append the inbox as a new episode, replay, and record the new actions."""
        new_events = [event(ORCHESTRATOR_STARTED, self.now()), *instance.inbox]
        instance.inbox = []
        for past in instance.history:
            past["IsPlayed"] = True
        instance.history.extend(new_events)
        state: dict[str, Any] = json.loads(
            self.orchestrators[instance.name](self.context_json(instance, instance.history))
        )
        instance.states.append(state)
        instance.episodes += 1
        instance.runtime_status = "Running"
        instance.custom_status = state.get("customStatus")
        actions = flatten(state.get("actions") or [])
        for action in actions[instance.handled_actions :]:
            kind = action["actionType"]
            if kind == CALL_ACTIVITY:
                seq = instance.next_sequence
                instance.next_sequence += 1
                instance.history.append(event(TASK_SCHEDULED, self.now(), seq, Name=action["functionName"]))
                instance.activities.append((seq, action["functionName"], action.get("input")))
            elif kind == CREATE_TIMER:
                seq = instance.next_sequence
                instance.next_sequence += 1
                fire_at = datetime.fromisoformat(action["fireAt"].replace("Z", "+00:00"))
                instance.history.append(event(TIMER_CREATED, self.now(), seq, FireAt=ts(fire_at)))
                instance.timers[seq] = fire_at
        instance.handled_actions = len(actions)
        instance.history.append(event(ORCHESTRATOR_COMPLETED, self.now()))
        if state.get("isDone"):
            instance.runtime_status = "Completed"
            instance.output = state.get("output")
        return state

    def fire_due_timers(self, instance: Instance) -> None:
        for seq, fire_at in sorted(instance.timers.items()):
            if fire_at <= self.now():
                del instance.timers[seq]
                instance.inbox.append(event(TIMER_FIRED, self.now(), TimerId=seq, FireAt=ts(fire_at)))

    async def run_activities(self, instance: Instance) -> None:
        pending, instance.activities = instance.activities, []
        for seq, name, payload in pending:
            argument = json.loads(payload) if payload is not None else None
            self.activity_calls.append((name, argument))
            try:
                result = await self.activities[name](argument)
            except Exception as exc:  # an activity failure is history, not a test crash
                instance.inbox.append(event(TASK_FAILED, self.now(), TaskScheduledId=seq, Reason=str(exc), Details=""))
                continue
            instance.inbox.append(event(TASK_COMPLETED, self.now(), TaskScheduledId=seq, Result=json.dumps(result)))

    async def step(self) -> bool:
        """One round over every instance; True when something happened."""
        progressed = False
        for instance in list(self.instances.values()):
            if not instance.active:
                continue
            await self.run_activities(instance)
            self.fire_due_timers(instance)
            if instance.inbox:
                try:
                    self.episode(instance)
                except Exception as exc:
                    instance.runtime_status, instance.error = "Failed", str(exc)
                progressed = True
        return progressed

    async def drain(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            if not await self.step():
                return
        raise AssertionError("the orchestrations did not settle")


class VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


class DurableHttp:
    """The extension's local RPC endpoints, backed by the engine, on 127.0.0.1."""

    def __init__(self, engine: DurableEngine) -> None:
        self.engine = engine
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    @staticmethod
    async def _json_body(request: web.Request) -> str | None:
        # The SDK posts `json=<already JSON-encoded string>`: the body is a JSON string of JSON.
        raw = await request.text()
        if not raw:
            return None
        decoded = json.loads(raw)
        return decoded if isinstance(decoded, str) or decoded is None else json.dumps(decoded)

    async def _start(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if not self.engine.start(request.match_info["name"], instance_id, await self._json_body(request)):
            return web.json_response({"Message": f"An instance with ID '{instance_id}' already exists."}, status=409)
        return web.json_response({"id": instance_id}, status=202)

    async def _raise(self, request: web.Request) -> web.Response:
        status = self.engine.raise_event(
            request.match_info["instance_id"], request.match_info["event"], await self._json_body(request) or "null"
        )
        return web.Response(status=status)

    async def _status(self, request: web.Request) -> web.Response:
        instance = self.engine.instances.get(request.match_info["instance_id"])
        if instance is None:
            return web.Response(status=404)
        body = {
            "name": instance.name,
            "instanceId": instance.instance_id,
            "runtimeStatus": instance.runtime_status,
            "customStatus": instance.custom_status,
            "output": instance.output,
            "createdTime": ts(self.engine.now()),
            "lastUpdatedTime": ts(self.engine.now()),
        }
        return web.json_response(body, status=202 if instance.active else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/durabletask/orchestrators/{name}/{instance_id}", self._start)
        app.router.add_post("/durabletask/instances/{instance_id}/raiseEvent/{event}", self._raise)
        app.router.add_get("/durabletask/instances/{instance_id}", self._status)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/durabletask/"

    def binding(self) -> str:
        """A durableClient binding value as the host passes it."""
        return json.dumps(
            {
                "taskHubName": "OpusTests",
                "creationUrls": {},
                "managementUrls": {},
                "rpcBaseUrl": self.base_url,
                "requiredQueryStringParameters": "",
            }
        )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
