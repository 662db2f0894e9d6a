"""/api/v1/keys: API keys, made and revoked by admins whose key sees every brand (auth.py).

A key is answered once, when it is made; afterwards only its first characters.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hookline.api._json import JSON, JSONRoute
from hookline.api.deps import RuntimeDep
from hookline.api.models import KeyCreated, KeyIn, KeyList, KeyOut
from hookline.keys import check_brands, check_name

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], route_class=JSONRoute)


@router.post(
    "",
    status_code=201,
    summary="Make a key; the answer holds it, once",
    response_model=KeyCreated,
)
async def create_key(body: KeyIn, runtime: RuntimeDep) -> JSON:
    brands = check_brands(body.brands)
    record, text = await runtime.keys.create(body.role, brands, check_name(body.name))
    answer: dict[str, Any] = {**record.as_dict(), "key": text}
    return JSON(answer, status_code=201)


@router.get(
    "",
    summary="List keys, revoked ones too (never the keys themselves)",
    response_model=KeyList,
)
async def list_keys(runtime: RuntimeDep) -> JSON:
    return JSON({"data": [k.as_dict() for k in await runtime.keys.list()]})


@router.delete("/{key_id}", summary="Revoke a key: it stops working at once", response_model=KeyOut)
async def revoke_key(key_id: str, runtime: RuntimeDep) -> JSON:
    return JSON((await runtime.keys.revoke(key_id)).as_dict())
