"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from vidbox.health import run_checks
from vidbox.web.deps import services_of


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    results = await run_checks(services_of(request).readiness_checks())
    failed = [r for r in results if not r.ok]
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": {r.name: {"ok": r.ok, "detail": r.detail} for r in results},
    }
    if failed:
        body["detail"] = "Not ready: " + "; ".join(f"{r.name}: {r.detail}" for r in failed)
    return JSONResponse(body, status_code=503 if failed else 200)
