"""Repository management (Triton's model repository extension), behind ``Authorization: Bearer <token>``.

Off (403) when ``ROBESERVE_ADMIN_TOKEN`` is unset.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.common import ERROR_RESPONSES, State
from service.errors import AdminDisabled, Unauthorized
from service.schemas import RepositoryIndexEntry

bearer = HTTPBearer(auto_error=False, description="ROBESERVE_ADMIN_TOKEN")


async def require_admin(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Let the request through only with the configured bearer token."""
    token = state.settings.admin_token
    if token is None:
        raise AdminDisabled("repository management is disabled: set ROBESERVE_ADMIN_TOKEN to enable it")
    if credentials is None or not hmac.compare_digest(
        credentials.credentials.encode(), token.get_secret_value().encode()
    ):
        raise Unauthorized("missing or wrong bearer token")


router = APIRouter(
    tags=["repository"],
    dependencies=[Depends(require_admin)],
    responses={**ERROR_RESPONSES, 401: {}, 403: {}},
)


@router.post("/v2/repository/index", response_model=list[RepositoryIndexEntry])
async def repository_index(state: State) -> list[RepositoryIndexEntry]:
    """Every model the service knows, with its state and the reason of its last failure."""
    return [
        RepositoryIndexEntry(
            name=entry.name,
            version=entry.serving.version if entry.serving else None,
            state=entry.state.value,
            reason=entry.reason,
        )
        for entry in state.manager.entries.values()
    ]


@router.post("/v2/repository/models/{model_name}/load")
async def load_model(model_name: str, state: State) -> dict[str, Any]:
    """Load the newest version (a failure keeps the serving version and answers 400 with the reason)."""
    served = await state.manager.load(model_name)
    return {"name": model_name, "version": served.version, "state": "READY"}


@router.post("/v2/repository/models/{model_name}/unload")
async def unload_model(model_name: str, state: State) -> dict[str, Any]:
    """Stop serving the model; requests already queued still finish."""
    await state.manager.unload(model_name)
    return {"name": model_name, "state": "UNAVAILABLE"}
