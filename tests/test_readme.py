"""The README's walk-through, run literally with only its port changed, against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.test_serve import SERVE, _free_port, _wait_healthy

README = Path(__file__).resolve().parent.parent / "README.md"
PORT_LINE = "PORT=8080"


def _walkthrough() -> str:
    text = README.read_text()
    start = text.index("## Five-minute walk-through")
    return text[start : text.index("\n## ", start + 1)]


def walkthrough_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", _walkthrough(), re.S)


def test_the_port_is_given_once_and_every_later_command_reuses_it() -> None:
    blocks = walkthrough_blocks()
    assert blocks[0].splitlines()[0] == PORT_LINE
    later = "".join(blocks[1:])
    assert "8080" not in later
    assert "$HL" in later


def _shown_outputs(block: str) -> list[str]:
    """What a block shows as its output, as patterns: `...` stands for any text.

    A group of `# ` lines right under the commands is output the reader will compare with;
    a group with a continuation line (`#  `, an excerpt cut across lines) is left out.
    """
    groups: list[list[str]] = [[]]
    for line in block.splitlines():
        if line.startswith("# "):
            groups[-1].append(line[2:])
        elif groups[-1]:
            groups.append([])
    patterns = []
    for group in groups:
        if not group or any(line.startswith(" ") for line in group):
            continue
        for line in group:
            patterns.append(_pattern(line))
    return patterns


def _pattern(line: str) -> str:
    """`dlv_...` is an id, `"..."` one JSON string, `...` anything; a column gap any gap."""
    # `, ...}` stands for `,"json_error":null}`: the space after the comma goes with it.
    line = line.replace(", ...", ",...")
    for shown, marker in (("_...", "\x00"), ('"..."', "\x01"), ("...", "\x02")):
        line = line.replace(shown, marker)
    pattern = re.escape(line)
    for marker, meaning in (("\x00", r"_\w+"), ("\x01", '"[^"]*"'), ("\x02", ".*?")):
        pattern = pattern.replace(marker, meaning)
    return re.sub(r"(?:\\ ){2,}", " +", pattern)


def _run(script: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    assert '"detail"' not in done.stdout, f"an error answer:\n{script}\n{done.stdout}"
    return done.stdout


async def _run_until(script: str, cwd: Path, arrived: str) -> str:
    """An echo list is read right after the event; the webhook may still be on its way."""
    out = ""
    for _ in range(100):
        out = await asyncio.to_thread(_run, script, cwd)
        if arrived in out:
            return out
        await asyncio.sleep(0.1)  # a server in another process: no event to await
    raise AssertionError(f"{arrived!r} never arrived:\n{out}")


@pytest.mark.timeout(180)
async def test_the_walkthrough_works_as_written_on_another_port(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the walk-through uses curl")
    port = _free_port()
    # The walk-through calls the CLI that `make run` installed: .venv/bin/hookline.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    blocks = walkthrough_blocks()
    prelude = blocks[0].replace(PORT_LINE, f"PORT={port}")
    env = {**os.environ, "HOOKLINE_PORT": str(port), "HOOKLINE_DATA_DIR": str(tmp_path / "d")}
    # As written: the echo service on hookline's own address needs no allowed network.
    env.pop("HOOKLINE_ALLOWED_NETWORKS", None)
    log = (tmp_path / "serve.log").open("wb")
    # `make run` is `.venv/bin/hookline serve`; the test starts that itself.
    proc = await asyncio.create_subprocess_exec(*SERVE, env=env, stdout=log, stderr=log)
    outputs: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc)
        for block in blocks[1:]:
            script = prelude + "\n".join(
                line for line in block.splitlines() if "make run" not in line
            )
            if "echo-list/my-journey-secret" in block:
                # The journey's second webhook comes two seconds after the first: poll for it.
                outputs.append(await _run_until(script, tmp_path, '"step":"again"'))
            elif "echo-list" in block:
                outputs.append(await _run_until(script, tmp_path, '"json":{'))
            else:
                outputs.append(await asyncio.to_thread(_run, script, tmp_path))
        # The prose between the blocks gives one command too: show a delivery of the list.
        (listed,) = (o for b, o in zip(blocks[1:], outputs, strict=True) if "deliveries list" in b)
        delivery_id = re.findall(r"^(dlv_\w+) +succeeded", listed, re.M)[-1]
        (show,) = re.findall(
            r"`(\.venv/bin/hookline --url \$HL deliveries show dlv_\.\.\.)`", _walkthrough()
        )
        delivery = json.loads(
            await asyncio.to_thread(_run, prelude + show.replace("dlv_...", delivery_id), tmp_path)
        )
    finally:
        proc.kill()
        await proc.wait()
        log.close()
    for block, output in zip(blocks[1:], outputs, strict=True):
        for shown in _shown_outputs(block):
            assert re.search(shown, output), f"the README shows\n{shown}\nbut got\n{output}"
    everything = "\n".join(outputs)
    assert f'"url":"http://127.0.0.1:{port}/echo-send/my-first-secret/"' in everything
    first_echo, second_echo, journey_echo, converted_echo = (
        json.loads(o) for o in outputs if o.startswith('{"secret"')
    )
    assert first_echo["requests"][0]["json"] == {
        "saw_template_id": "12",
        "minigame_spins_count": "3",
        "smartico_user_id": "77",
        "user_ext_id": "user-42",
        "brand": "5",
    }
    assert "succeeded" in everything  # the deliveries list
    assert "create    level-to-crm" in everything  # the dry run
    assert "created   level-to-crm (rule_" in everything
    # The broken case: quote and backslash arrive escaped, as valid JSON.
    assert second_echo["requests"][0]["json"] == {"level": 'Lvl "5" \\ gold', "user": "user-42"}
    # The journey: a webhook at once, another after the delay, both with the entry event's tag.
    assert [r["json"] for r in journey_echo["requests"]] == [
        {"step": "again", "saw_template_id": "7"},
        {"step": "hello", "saw_template_id": "7"},
    ]
    # Converting emitted campaign_converted, and the rule on it called the echo service.
    assert converted_echo["requests"][0]["json"] == {"journey": "spin-welcome", "user": "user-42"}
    (stats,) = (json.loads(o) for o in outputs if '"treatment"' in o)
    assert stats["treatment"]["entered"] == 1
    assert stats["treatment"]["converted"] == 1
    assert stats["treatment"]["finished"] == {"goal": 1}
    assert stats["blocks"]["wait"] == {"entered": 1, "passed": 1, "waiting": 0}
    assert delivery["id"] == delivery_id
    assert [(a["number"], a["status_code"]) for a in delivery["attempt_log"]] == [(1, 200)]
    preview = json.loads(outputs[-1])
    assert preview["url"] == "https://crm.example.com/users/user-42"
    assert json.loads(preview["body"]) == {"level": 'Lvl "5" \\ gold', "spins": 3}


def _section_blocks(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}")
    return re.findall(r"```sh\n(.*?)```", text[start : text.index("\n## ", start + 1)], re.S)


@pytest.mark.timeout(120)
async def test_going_to_production_works_as_written(tmp_path: Path) -> None:
    """Keys on the data directory, narrower keys, a brand's admin: each placeholder filled
    with what the command before it printed, and the port changed as the section says."""
    if shutil.which("curl") is None:
        pytest.skip("the section uses curl")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    # `source .venv/bin/activate` puts `hookline` on the PATH; another port is HOOKLINE_URL.
    env |= {"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "HOOKLINE_URL": url}
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *SERVE, "--port", str(port), cwd=tmp_path, env=env, stdout=log, stderr=log
    )

    def run(script: str) -> str:
        return _run(script.replace("http://127.0.0.1:8080", url), tmp_path, env)

    try:
        async with httpx.AsyncClient(base_url=url) as client:
            await _wait_healthy(client, proc)
        first, use, brands, *_ = _section_blocks("Going to production")
        (admin,) = re.findall(r"^hlk_\S+$", await asyncio.to_thread(run, first), re.M)
        *use_lines, revoke = use.strip().splitlines()
        listed = await asyncio.to_thread(run, "\n".join(use_lines).replace("hlk_...", admin))
        assert '"name":"spin-to-crm"' not in listed and '{"data":[]' in listed  # no rule yet
        (dashboard,) = re.findall(r"^(key_\w+) +dashboard +read", listed, re.M)
        env["HOOKLINE_API_KEY"] = admin  # exported by the block, for the rest of the shell
        await asyncio.to_thread(run, revoke.replace("key_01J...", dashboard))
        async with httpx.AsyncClient(base_url=url) as client:
            patched = await client.patch(
                "/api/v1/users/user-42/state?ext_brand_id=brand-1",
                json={"level": 3},
                headers={"authorization": f"Bearer {admin}"},
            )
            assert patched.status_code == 200, patched.text
        make_key, *with_key = brands.strip().splitlines()
        (brand_admin,) = re.findall(r"^hlk_\S+$", await asyncio.to_thread(run, make_key), re.M)
        answers = await asyncio.to_thread(
            run, "\n".join(with_key).replace("hlk_...", brand_admin, 1)
        )
        async with httpx.AsyncClient(base_url=url) as client:
            keys = (
                await client.get("/api/v1/keys", headers={"authorization": f"Bearer {admin}"})
            ).json()["data"]
    finally:
        proc.kill()
        await proc.wait()
        log.close()
    by_name = {k["name"]: k for k in keys}
    assert by_name["ops"]["role"] == "admin" and by_name["ops"]["revoked_at"] is None
    assert by_name["shop-backend"]["brands"] == ["brand-1"]
    assert by_name["dashboard"]["revoked_at"] is not None
    assert by_name["brand-1-ops"]["brands"] == ["brand-1"]
    # Two curl answers, one after the other with no line between them.
    rule, end = json.JSONDecoder().raw_decode(answers)
    assert rule["name"] == "b1-spins" and rule["ext_brand_id"] == "brand-1"
    # The brand's admin reads its brand's user.
    assert json.loads(answers[end:])["level"] == 3


def _make_dry_run(target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    done = subprocess.run(
        ["make", "-n", "-B", target],
        cwd=README.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def test_make_run_installs_only_what_running_needs_and_make_test_the_dev_tools() -> None:
    run = _make_dry_run("run")
    assert run[-1].endswith("pip install -q -e .")
    assert not any("dev" in line for line in run)
    assert _make_dry_run("test")[-1].endswith("pip install -q -e '.[dev]'")


def test_make_alone_lists_every_target_the_readme_names_and_installs_nothing() -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    named = set(re.findall(r"`make ([a-z-]+)`", README.read_text()))
    assert {"run", "test", "lint", "bench", "bench-quick"} <= named
    done = subprocess.run(
        ["make", "-n"], cwd=README.parent, capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip" not in done.stdout and "venv" not in done.stdout
    listed = subprocess.run(
        ["make", "-s"], cwd=README.parent, capture_output=True, text=True, timeout=30, check=True
    )
    targets = {line.split(":", 1)[0] for line in listed.stdout.splitlines()}
    assert named <= targets, f"`make` does not list {named - targets}"
