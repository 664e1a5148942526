"""The Azure Functions entry point: ONE app object; every other function comes from a blueprint.

This is the only module that wires Azure Functions to the services. The HTTP API is the same
FastAPI app that uvicorn serves locally, bridged by AsgiFunctionApp, with the process-wide container.

Runs started from the API (start, retry, force) need a Durable client, and an ASGI route gets no
binding. So the app's one catch-all HTTP function (what AsgiFunctionApp registers, route `/{*route}`,
every method) is declared here with a `durableClient` input as well: each request runs inside
`durable_client(client)`, and the fan-in started by that request uses it. There is no second HTTP
function, hence no question of route precedence between a specific route and the catch-all.

Settings the app cannot run on (malformed, or missing what a Functions app needs) are one CRITICAL
log line at indexing; the app then registers only the HTTP function, answering 503 to every request,
so no trigger takes a message it would fail on and the worker still has a function to index.
"""

from __future__ import annotations

import logging
from urllib.parse import SplitResult, quote, unquote, unquote_to_bytes, urlsplit, urlunsplit

import azure.durable_functions as df
import azure.functions as func

from api.app import create_app
from fanin.durable import durable_client
from shared.functions_runtime import MISCONFIGURED, functions_settings, misconfigured_app, runtime
from shared.settings import SettingsError

log = logging.getLogger(__name__)

HTTP_FUNCTION = "http_app_func"
CLIENT_BINDING = "client"


def _decodable(path: str) -> str:
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return quote(unquote(path, errors="replace"), safe="/")
    return path


def _with_valid_port(url: SplitResult) -> str:
    try:
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        host = url.hostname or ""
        return f"[{host}]" if ":" in host else host
    return url.netloc


def bridgeable(req: func.HttpRequest) -> func.HttpRequest:
    """The request as the ASGI bridge can take it; on these it failed the invocation (a 500):

    - a path that is not UTF-8 once percent-decoded (`/api/%FF`): what does not decode becomes
      U+FFFD, as uvicorn does, so the app answers it as it does locally;
    - a URL whose port is not a port (`Host: localhost:99999`): the port is dropped (the scheme's).
    """
    url = urlsplit(req.url)
    fixed = url._replace(path=_decodable(url.path), netloc=_with_valid_port(url))
    if fixed == url:
        return req
    return func.HttpRequest(
        req.method,
        urlunsplit(fixed),
        headers=dict(req.headers),
        params=dict(req.params),
        route_params=dict(req.route_params),
        body=req.get_body(),
    )


class OpusFunctionApp(func.AsgiFunctionApp):
    """AsgiFunctionApp whose catch-all HTTP function also binds a Durable client for the request."""

    def _add_http_app(
        self, http_middleware: func.AsgiMiddleware | func.WsgiMiddleware, function_name: str = HTTP_FUNCTION
    ) -> None:
        if not isinstance(http_middleware, func.AsgiMiddleware):
            raise TypeError("Please pass AsgiMiddleware instance as parameter.")
        asgi = http_middleware

        @self.function_name(name=function_name)
        @self.http_type(http_type="asgi")
        @self.route(methods=list(func.HttpMethod), auth_level=self.auth_level, route="/{*route}")
        @self.generic_input_binding(arg_name=CLIENT_BINDING, type="durableClient")
        async def http_app_func(req: func.HttpRequest, context: func.Context, client: str) -> func.HttpResponse:
            if not self.startup_task_done:
                if not await asgi.notify_startup():
                    raise RuntimeError("ASGI middleware startup failed.")
                self.startup_task_done = True
            with durable_client(df.DurableOrchestrationClient(client, context.invocation_id)):
                response: func.HttpResponse = await asgi.handle_async(bridgeable(req), context)
                return response


def _api() -> object:
    api = create_app()
    # The API shares the process container (and its Durable fan-in) with the triggers.
    api.state.provider = runtime
    return api


def _app() -> OpusFunctionApp:
    try:
        functions_settings()
    except SettingsError as exc:
        # Raising here would leave the worker nothing to index (Azure logs only "No job functions
        # found"); instead no trigger consumes anything and every request answers 503.
        log.critical("%s: no trigger is registered until the settings are fixed: %s", MISCONFIGURED, exc)
        return OpusFunctionApp(app=misconfigured_app(), http_auth_level=func.AuthLevel.ANONYMOUS)
    # Imported once the settings are known good: each blueprint reads them (queues, schedule) on import.
    from consolidator.blueprint import bp as consolidator_bp
    from fanin.blueprint import bp as fanin_bp
    from scheduler.blueprint import bp as scheduler_bp
    from shared.blueprint import bp as operations_bp
    from worker.blueprint import bp as worker_bp

    app = OpusFunctionApp(app=_api(), http_auth_level=func.AuthLevel.ANONYMOUS)
    for blueprint in (scheduler_bp, worker_bp, fanin_bp, consolidator_bp, operations_bp):
        app.register_functions(blueprint)
    return app


app = _app()
