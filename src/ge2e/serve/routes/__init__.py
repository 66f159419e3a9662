"""The API's routes, one router per concern; :func:`ge2e.serve.app.create_app` mounts them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ge2e.serve.auth import require
from ge2e.serve.keys import Principal, Role
from ge2e.serve.service import Service


def _service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(_service)]
# each route names the least role it needs; the dependency authenticates, rate-limits and checks the role from
# the headers before anything reads the body
Verifier = Annotated[Principal, Depends(require(Role.VERIFY))]
Enroller = Annotated[Principal, Depends(require(Role.ENROLL))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
