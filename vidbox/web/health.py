"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from vidbox.health import run_checks
from vidbox.web.auth import optional_user
from vidbox.web.deps import services_of


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Anyone (a load balancer, a container manager) learns whether the box is ready; only an
    admin learns what failed and why: the details name folders, the FFmpeg build and the
    storage endpoint. ``vidbox check`` prints them too."""
    results = await run_checks(services_of(request).readiness_checks())
    failed = [r for r in results if not r.ok]
    status = 503 if failed else 200
    body: dict[str, object] = {"status": "ok" if not failed else "unavailable"}
    if not await _is_admin(request):
        if failed:
            body["detail"] = "Not ready."
        return JSONResponse(body, status_code=status)
    body["checks"] = {r.name: {"ok": r.ok, "detail": r.detail} for r in results}
    if failed:
        body["detail"] = "Not ready: " + "; ".join(f"{r.name}: {r.detail}" for r in failed)
    return JSONResponse(body, status_code=status)


async def _is_admin(request: Request) -> bool:
    try:
        user = await optional_user(request)
    except Exception:  # a bad token, or the database being what is broken
        return False
    return user is not None and user.is_admin
