"""Journeys as code: the journey kind of :mod:`hookline.applyfile`, and its local checks.

``hookline journeys apply`` makes each stored journey equal to its entry in the file,
matched by name; a changed journey is replaced (an active one gets a new version, and
users inside finish on theirs). The server checks every journey before any is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hookline.applyfile import Kind, dotted, duplicate_names, error_line
from hookline.journeys import DEFINITION_KEYS
from hookline.readonly import JOURNEY

# The keys of a journey as written; the server adds the read-only ones (readonly.JOURNEY).
JOURNEY_KEYS = ("name", "description", "status", "ext_brand_id", *DEFINITION_KEYS)


def check(journeys: Sequence[Mapping[str, Any]]) -> list[str]:
    """The problems of shape found without a server (the blocks are the server's to check:
    a block may call a saved webhook only the server knows)."""
    from pydantic import ValidationError

    from hookline.api.journeys import JourneyIn
    from hookline.api.models import error_location

    problems = duplicate_names(JOURNEYS, journeys)
    for index, raw in enumerate(journeys):
        try:
            JourneyIn.model_validate(raw)
        except ValidationError as exc:
            where = JOURNEYS.label(raw, index)
            for error in exc.errors():
                field = dotted(error_location(error))
                problems.append(error_line(where, field, str(error["msg"])))
    return problems


JOURNEYS = Kind("journey", "journeys", JOURNEY_KEYS, check, JOURNEY)
