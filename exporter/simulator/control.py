"""The simulator's control API under ``/__simulator/`` (JSON, no auth).

It lets the demo and the tests change the world: listener and container status, environments
and which runtime is attached to which, faults, counters, and users (unlock, a new password or
API token, privileges taken away). It is a sub-application whose one middleware turns a refused
request (ControlError) into its JSON error answer, so each handler reads as the happy path.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from .faults import Faults
from .wire import BadRequest, decode_json_body
from .world import SimContainer, SimListener, SimUser

if TYPE_CHECKING:
    from .server import Simulator

CONTROL_PREFIX: Final = "/__simulator"

T = TypeVar("T")


class ControlError(Exception):
    """A control-API request the simulator refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def _refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)


async def _json(request: web.Request) -> object:
    try:
        return decode_json_body(await request.read())
    except BadRequest as exc:
        raise ControlError(400, str(exc)) from exc


async def _body(
    request: web.Request, *, required: set[str], optional: set[str]
) -> dict[str, object]:
    """A control-API JSON object with exactly the allowed keys; typos are errors, not no-ops."""
    document = await _json(request)
    if not isinstance(document, dict):
        raise ControlError(400, "the body must be a JSON object")
    missing = sorted(required - set(document))
    if missing:
        raise ControlError(400, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(document) - required - optional)
    if unknown:
        raise ControlError(400, f"unknown field(s): {', '.join(unknown)}")
    return document


class ControlApi:
    """The control API's handlers, over one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def app(self) -> web.Application:
        """The sub-application to mount at CONTROL_PREFIX."""
        app = web.Application(middlewares=[_refusals])
        app.router.add_get("/state", self.state)
        app.router.add_put("/listeners/{listenerId}", self.put_listener)
        app.router.add_post("/listeners", self.add_listener)
        app.router.add_delete("/listeners/{listenerId}", self.delete_listener)
        app.router.add_put("/containers/{containerId}", self.put_container)
        app.router.add_post("/environments", self.add_environment)
        app.router.add_put("/containers/{containerId}/environment", self.attach)
        app.router.add_delete("/containers/{containerId}/environment", self.detach)
        app.router.add_post("/faults", self.set_faults)
        app.router.add_delete("/faults", self.clear_faults)
        app.router.add_post("/reset-counters", self.reset_counters)
        app.router.add_put("/users/{username}", self.put_user)
        app.router.add_post("/users/{username}/unlock", self.unlock_user)
        return app

    async def state(self, request: web.Request) -> web.Response:
        """GET /state: the whole state of the simulator."""
        return web.json_response(self._sim.state())

    async def put_listener(self, request: web.Request) -> web.Response:
        """PUT /listeners/{listenerId}: set a listener's status now."""
        document = await _body(request, required={"status"}, optional={"account_id"})
        listener = self._find_listener(request.match_info["listenerId"], document.get("account_id"))
        listener.status = str(document["status"])
        return web.json_response(dataclasses.asdict(listener))

    async def add_listener(self, request: web.Request) -> web.Response:
        """POST /listeners: deploy a listener on a container."""
        document = await _body(
            request,
            required={"account_id", "container_id", "listener_id"},
            optional={"status", "connector_type", "process_name"},
        )
        connector_type = document.get("connector_type", "wss")
        # The world's own errors name what is wrong; only their HTTP status is decided here.
        try:
            listener = self._sim.add_listener(
                str(document["account_id"]),
                str(document["container_id"]),
                str(document["listener_id"]),
                status=str(document.get("status", "listening")),
                connector_type=None if connector_type is None else str(connector_type),
                process_name=str(document.get("process_name", "")),
            )
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise ControlError(409, str(exc)) from exc
        return web.json_response(dataclasses.asdict(listener), status=201)

    async def delete_listener(self, request: web.Request) -> web.Response:
        """DELETE /listeners/{listenerId}: undeploy a listener."""
        listener = self._find_listener(
            request.match_info["listenerId"], request.query.get("account_id")
        )
        for account in self._sim.accounts.values():
            if account.listeners.get(listener.listener_id) is listener:
                del account.listeners[listener.listener_id]
        return web.Response(status=204)

    async def put_container(self, request: web.Request) -> web.Response:
        """PUT /containers/{containerId}: change a container's status or name."""
        document = await _body(request, required=set(), optional={"status", "name", "account_id"})
        container = self._find_container(
            request.match_info["containerId"], document.get("account_id")
        )
        if "status" in document:
            container.status = str(document["status"])
        if "name" in document:
            container.name = str(document["name"])
        return web.json_response(dataclasses.asdict(container))

    async def add_environment(self, request: web.Request) -> web.Response:
        """POST /environments: add an environment (classification null: none, basic support)."""
        document = await _body(
            request,
            required={"account_id", "name"},
            optional={"classification", "environment_id"},
        )
        classification = document.get("classification", "PROD")
        environment_id = document.get("environment_id")
        try:
            environment = self._sim.add_environment(
                str(document["account_id"]),
                str(document["name"]),
                classification=None if classification is None else str(classification),
                environment_id=None if environment_id is None else str(environment_id),
            )
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise ControlError(409, str(exc)) from exc
        return web.json_response(dataclasses.asdict(environment), status=201)

    async def attach(self, request: web.Request) -> web.Response:
        """PUT /containers/{containerId}/environment: attach a runtime, or move it."""
        document = await _body(request, required={"environment_id"}, optional={"account_id"})
        container_id = request.match_info["containerId"]
        account_id = self._account_of(container_id, document.get("account_id"))
        environment_id = str(document["environment_id"])
        try:
            self._sim.attach(account_id, container_id, environment_id)
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        return web.json_response({"container_id": container_id, "environment_id": environment_id})

    async def detach(self, request: web.Request) -> web.Response:
        """DELETE /containers/{containerId}/environment: attach the runtime to no environment."""
        container_id = request.match_info["containerId"]
        account_id = self._account_of(container_id, request.query.get("account_id"))
        try:
            self._sim.detach(account_id, container_id)
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        return web.Response(status=204)

    async def set_faults(self, request: web.Request) -> web.Response:
        """POST /faults: replace the faults in force."""
        document = await _json(request)
        try:
            faults = Faults.from_json(document)
        except (TypeError, ValueError) as exc:
            raise ControlError(400, str(exc)) from exc
        self._sim.set_faults(faults)
        return web.json_response(dataclasses.asdict(self._sim.faults))

    async def clear_faults(self, request: web.Request) -> web.Response:
        """DELETE /faults: no faults any more."""
        self._sim.set_faults(Faults())
        return web.json_response(dataclasses.asdict(self._sim.faults))

    async def reset_counters(self, request: web.Request) -> web.Response:
        """POST /reset-counters: zero the request counters and empty the change log."""
        self._sim.reset_counters()
        return web.Response(status=204)

    async def put_user(self, request: web.Request) -> web.Response:
        """PUT /users/{username}: a new password or API token (the old one is revoked), or the
        routes the user may not call (``denied_routes``, route names as in request_counts)."""
        document = await _body(
            request, required=set(), optional={"password", "api_token", "denied_routes"}
        )
        user = self._user(request.match_info["username"])
        for key in ("password", "api_token"):
            if key in document:
                value = document[key]
                if not isinstance(value, str) or not value:
                    raise ControlError(400, f"{key} must be a non-empty string")
                setattr(user, key, value)
        if "denied_routes" in document:
            routes = document["denied_routes"]
            known = self._sim.route_names()
            if not isinstance(routes, list) or not all(r in known for r in routes):
                raise ControlError(
                    400, f"denied_routes must be a list of: {', '.join(sorted(known))}"
                )
            user.denied_routes = {str(route) for route in routes}
        return web.json_response(user.to_json())

    async def unlock_user(self, request: web.Request) -> web.Response:
        """POST /users/{username}/unlock: what an administrator does for a locked user."""
        user = self._user(request.match_info["username"])
        return web.json_response(self._sim.unlock(user.username).to_json())

    def _user(self, username: str) -> SimUser:
        try:
            return self._sim.user(username)
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc

    def _find_listener(self, listener_id: str, account_id: object) -> SimListener:
        """A listener by id; raise ControlError if not exactly one."""
        accounts = self._sim.accounts
        if account_id is not None:
            account = accounts.get(str(account_id))
            if account is None or listener_id not in account.listeners:
                raise ControlError(404, f"listener {listener_id} not found in {account_id}")
            return account.listeners[listener_id]
        found = [a.listeners[listener_id] for a in accounts.values() if listener_id in a.listeners]
        return _only(found, f"listener {listener_id}")

    def _find_container(self, container_id: str, account_id: object) -> SimContainer:
        """A container by id; raise ControlError if not exactly one."""
        candidates = [
            a.containers[container_id]
            for a in self._sim.accounts.values()
            if container_id in a.containers and (account_id is None or a.account_id == account_id)
        ]
        return _only(candidates, f"container {container_id}")

    def _account_of(self, container_id: str, account_id: object) -> str:
        """The id of the one account holding this container; ControlError if not exactly one."""
        candidates = [
            a.account_id
            for a in self._sim.accounts.values()
            if container_id in a.containers and (account_id is None or a.account_id == account_id)
        ]
        return _only(candidates, f"container {container_id}")


def _only(found: list[T], what: str) -> T:
    """The one item found; ControlError if there is none, or one in each of several accounts."""
    if not found:
        raise ControlError(404, f"{what} not found")
    if len(found) > 1:
        raise ControlError(400, f"{what} is in several accounts: give account_id")
    return found[0]
