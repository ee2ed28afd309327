"""`robolake reliability`: the fault and hostile-input campaign against the running stack."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from robolake.cli.common import err_console, load_settings, out_console
from robolake.errors import RobolakeError, StateError


class FindingsError(RobolakeError):
    """The campaign found lost writes, faults not survived or mishandled input (the table names them)."""

    exit_code = 3


@click.command("reliability")
@click.option(
    "--profile",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="small: CI size, under 5 minutes; full: 2,000 objects per fault, every node killed under "
    "accelerator PUTs, a node frozen for 130 s (15-20 minutes).",
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of files and generated cases.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reliability"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON instead of Markdown.")
def reliability(profile: str, seed: int, out: Path, as_json: bool) -> None:
    """Kill and freeze the stack's processes mid-work, send the accelerator hostile input; print the table.

    For each fault (kill -9 of each MinIO node, lakeFS, the accelerator and the hooks server;
    SIGSTOP of a node; a node's drive made read-only, as root) an upload of small objects, a
    read sweep and a lakeFS commit are in flight; after recovery every acknowledged write must
    be on MinIO byte for byte, no half commit on the branch, and a rerun must finish the work.
    Then hostile requests to the accelerator (each compared with MinIO's answer), hostile files
    to `robolake ingest` and the validation hook, the security checks (secrets in the action
    file, file modes, process lists, logs, --json; auth on every port), and mixed load at the
    accelerator's measured capacity with 100 slow clients, its memory sampled.

    It needs a stack this machine runs (robolake stack up), and brings it back up at the end.
    Exit status 3 when a write was lost, a fault not survived or an input mishandled.

    \b
        robolake reliability                  # the small profile
        robolake reliability --profile full --out reliability
    """
    from robolake.reliability import campaign
    from robolake.reliability.table import PROFILES, render_markdown, summary
    from robolake.stack.native import NativeStack

    settings = load_settings()
    stack = NativeStack(settings)
    status = stack.status()
    if not status.healthy:
        down = [c.name for c in status.components if not c.healthy]
        raise StateError(f"the stack is not healthy ({', '.join(down)} down); start it with `robolake stack up`")
    chosen = PROFILES[profile]
    if seed != chosen.seed:
        chosen = dataclasses.replace(chosen, seed=seed)
    with err_console.status(f"reliability campaign, profile {profile}") as spinner:

        def say(message: str) -> None:
            spinner.update(message)
            err_console.print(f"  {message}", markup=False)

        report = campaign.run(stack, chosen, say)
    where = campaign.save(settings, report, out)
    doc = summary(report)
    if as_json:
        click.echo(json.dumps({"summary": doc, "run_id": report.run_id, "stored": where}, indent=2, sort_keys=True))
    else:
        out_console.print(render_markdown(report), markup=False)
    err_console.print(f"results (results.md, results.json): {', '.join(where)}")
    _judge(doc)


def _judge(doc: dict[str, Any]) -> None:
    unsurvived = doc["faults_injected"] - doc["faults_survived"]
    if doc["lost_writes"] or doc["bad_inputs_mishandled"] or unsurvived:
        raise FindingsError(
            f"{doc['lost_writes']} lost write(s), {unsurvived} fault(s) not survived, "
            f"{doc['bad_inputs_mishandled']} mishandled input(s); the table above names each"
        )
