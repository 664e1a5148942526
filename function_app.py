"""The Azure Functions entry point: ONE app object; every other function comes from a blueprint.

This is the only module that wires Azure Functions to the services. The HTTP API is the same
FastAPI app that uvicorn serves locally, bridged by AsgiFunctionApp.
"""

from __future__ import annotations

import azure.functions as func

from api.app import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.ANONYMOUS)
