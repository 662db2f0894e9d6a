"""Mutation testing of the pure domain modules, each against its own fast unit tests.

``make mutation`` runs this. mutmut reads one ``[tool.mutmut]`` table and keeps its results in
``mutants/`` under the directory it runs in, so each module gets a scratch project of its own,
``mutants/<module>/``: links to ``src/`` and ``tests/`` and a copy of ``pyproject.toml`` whose
``[tool.mutmut]`` table also names that module and its tests. A test of another module that
happens to call this one cannot kill its mutants: a module's own tests must pin what it does.

The figure that counts is killed / (total - equivalent): ``tests/mutation-equivalents.md``
lists, with a reason each, the mutants that change no observable behaviour.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.md"

# Each module and the tests that are its own: fast, pure, no server.
MODULES: dict[str, tuple[str, ...]] = {
    "templates": (
        "tests/test_templates.py",
        "tests/test_templates_props.py",
        "tests/test_templates_pins.py",
    ),
    "conditions": ("tests/test_conditions.py", "tests/test_conditions_pins.py"),
    "deliveries": ("tests/test_deliveries.py", "tests/test_deliveries_pins.py"),
}

# A mutant's verdict as ``mutmut results --all true`` prints it: "    <name>: <status>".
RESULT_LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
# A listed equivalent in tests/mutation-equivalents.md: "- `<name>`: <reason>".
EQUIVALENT_LINE = re.compile(r"^- `(?P<name>hookline\.[^`]+)`")


@dataclass(frozen=True, slots=True)
class Outcome:
    module: str
    statuses: dict[str, str]
    equivalents: frozenset[str]
    seconds: float

    def names(self, status: str) -> list[str]:
        return sorted(n for n, s in self.statuses.items() if s == status)

    @property
    def killed(self) -> int:
        # A mutant that makes the tests hang is caught as surely as one that makes them fail.
        return sum(1 for s in self.statuses.values() if s in ("killed", "timeout"))

    @property
    def unexplained(self) -> list[str]:
        """Survivors not listed as equivalent: behaviour that no test pins."""
        return [n for n in self.names("survived") if n not in self.equivalents]

    @property
    def stale_equivalents(self) -> list[str]:
        """Listed as equivalent, yet killed or gone: the list needs mending."""
        return sorted(self.equivalents - set(self.names("survived")))

    @property
    def counted(self) -> int:
        return len(self.statuses) - len(self.equivalents & set(self.names("survived")))

    @property
    def ratio(self) -> float:
        return self.killed / self.counted if self.counted else 1.0


def listed_equivalents(module: str) -> frozenset[str]:
    if not EQUIVALENTS.exists():
        return frozenset()
    prefix = f"hookline.{module}."
    names = (EQUIVALENT_LINE.match(line) for line in EQUIVALENTS.read_text("utf-8").splitlines())
    return frozenset(m["name"] for m in names if m and m["name"].startswith(prefix))


def scratch_project(module: str, tests: tuple[str, ...]) -> Path:
    """A fresh ``mutants/<module>/`` whose pyproject names the module and its tests."""
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("src", "tests"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    lines = (ROOT / "pyproject.toml").read_text("utf-8").splitlines()
    header = lines.index("[tool.mutmut]")
    # The two keys are left out of the shared table, so inserting them cannot duplicate a key.
    lines[header + 1 : header + 1] = [
        f'only_mutate = ["src/hookline/{module}.py"]',
        "pytest_add_cli_args_test_selection = [{}]".format(", ".join(f'"{t}"' for t in tests)),
    ]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n", "utf-8")
    return work


def run_module(module: str, tests: tuple[str, ...], max_children: int) -> Outcome:
    work = scratch_project(module, tests)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    started = time.monotonic()
    print(f"== {module}: mutmut against {' '.join(tests)}", flush=True)
    # mutmut redraws a progress line; its log goes to a file and only the figures to the terminal.
    with (work / "mutmut.log").open("wb") as log:
        run = subprocess.run(
            [mutmut, "run", "--max-children", str(max_children)],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"mutmut failed on {module} (exit {run.returncode}); see {work / 'mutmut.log'}")
    answer = subprocess.run(
        [mutmut, "results", "--all", "true"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    statuses = {
        m["name"]: m["status"]
        for m in map(RESULT_LINE.match, answer.stdout.splitlines())
        if m and m["name"].startswith(f"hookline.{module}.")
    }
    return Outcome(module, statuses, listed_equivalents(module), seconds)


def report(outcomes: list[Outcome]) -> bool:
    print()
    print(f"{'module':<12}{'killed':>8}{'survived':>10}{'equiv.':>8}{'total':>7}{'kill %':>9}")
    ok = True
    for o in outcomes:
        survived = len(o.names("survived"))
        equivalent = len(o.statuses) - o.counted
        print(
            f"{o.module:<12}{o.killed:>8}{survived:>10}{equivalent:>8}{len(o.statuses):>7}"
            f"{100 * o.ratio:>8.1f}%   ({o.killed}/{o.counted} non-equivalent, {o.seconds:.0f} s)"
        )
        others = {s for s in o.statuses.values()} - {"killed", "timeout", "survived"}
        for status in sorted(others):
            print(f"    {status}: {', '.join(o.names(status))}")
            ok = False
        for name in o.unexplained:
            print(f"    survived, not listed as equivalent: {name}")
        for name in o.stale_equivalents:
            print(f"    listed as equivalent but not a survivor (mend the list): {name}")
            ok = False
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules", nargs="*", metavar="module", help=f"default: {' '.join(MODULES)}"
    )
    parser.add_argument("--max-children", type=int, default=1, help="mutmut workers (default 1)")
    parser.add_argument(
        "--min-ratio", type=float, default=0.95, help="fail below this kill ratio (default 0.95)"
    )
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    outcomes = [run_module(m, MODULES[m], args.max_children) for m in modules]
    ok = report(outcomes)
    low = [o.module for o in outcomes if o.ratio < args.min_ratio]
    if low:
        print(f"below {args.min_ratio:.0%} of non-equivalent mutants killed: {', '.join(low)}")
    print("inspect a mutant: cd mutants/<module> && ../../.venv/bin/mutmut show <name>")
    sys.exit(0 if ok and not low else 1)


if __name__ == "__main__":
    main()
