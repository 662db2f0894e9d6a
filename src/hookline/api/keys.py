"""/api/v1/keys: API keys, made and revoked by admins whose key sees every brand (auth.py).

A key is answered once, when it is made; afterwards only its first characters.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from hookline.api._json import JSON, JSONRoute
from hookline.api.deps import RuntimeDep
from hookline.keys import MAX_NAME, Role, check_brands, check_name

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], route_class=JSONRoute)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="admin: everything; ingest: send events and state; read")
    # Checked by check_brands, so an error names the brand: brands[2].
    brands: list[Any] = Field(
        default_factory=list,
        description="Only events and data of these brands (ext_brand_id); none: every brand",
        json_schema_extra={"items": {"type": ["string", "integer"]}},
    )
    name: str = Field(default="", max_length=MAX_NAME, description="What the key is for")


@router.post("", status_code=201, summary="Make a key; the answer holds it, once")
async def create_key(body: KeyIn, runtime: RuntimeDep) -> JSON:
    brands = check_brands(body.brands)
    record, text = await runtime.keys.create(body.role, brands, check_name(body.name))
    answer: dict[str, Any] = {**record.as_dict(), "key": text}
    return JSON(answer, status_code=201)


@router.get("", summary="List keys, revoked ones too (never the keys themselves)")
async def list_keys(runtime: RuntimeDep) -> JSON:
    return JSON({"data": [k.as_dict() for k in await runtime.keys.list()]})


@router.delete("/{key_id}", summary="Revoke a key: it stops working at once")
async def revoke_key(key_id: str, runtime: RuntimeDep) -> JSON:
    return JSON((await runtime.keys.revoke(key_id)).as_dict())
