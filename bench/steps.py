"""The steps of a bench run, by the names ``--only`` and ``--skip`` take."""

from __future__ import annotations

# Every step, by the name --only and --skip take; a new scenario adds its name here.
STEPS = (
    "limit-aiohttp",
    "limit-pyreqwest",
    "celery",
    "e2e-batch",
    "e2e-single",
    "reaction",
    "ingest-batch",
    "ingest-single",
    "scale-rules",
    "scale-users",
    "scale-dests",
    "memory",
    "journey_throughput",
    "journey_timers",
    "journey_waiting",
)
# Names that stand for several steps.
GROUPS = {
    "limit": ("limit-aiohttp", "limit-pyreqwest"),
    "e2e": ("e2e-batch", "e2e-single"),
    "ingest": ("ingest-batch", "ingest-single"),
    "scaling": ("scale-rules", "scale-users", "scale-dests"),
    "journeys": ("journey_throughput", "journey_timers", "journey_waiting"),
}


class Skipped:
    """The steps this run leaves out: ``"x" in skipped`` is True for a step named by
    ``--skip``, or not named by ``--only`` when it is given."""

    def __init__(self, only: str = "", skip: str = "") -> None:
        self.only = self._names(only, "--only")
        self.skip = self._names(skip, "--skip")

    @staticmethod
    def _names(text: str, option: str) -> set[str]:
        names: set[str] = set()
        for name in filter(None, (part.strip() for part in text.split(","))):
            if name in GROUPS:
                names.update(GROUPS[name])
            elif name in STEPS:
                names.add(name)
            else:
                known = ", ".join([*STEPS, *GROUPS])
                raise ValueError(f"{option}: no step is called {name!r}; the steps: {known}")
        return names

    def __contains__(self, name: object) -> bool:
        return name in self.skip or (bool(self.only) and name not in self.only)

    @property
    def partial(self) -> bool:
        """True when some step is left out (the results are then not the reference run)."""
        return any(step in self for step in STEPS)
