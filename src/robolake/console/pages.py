"""The console's six pages, each rendered from the data its ``/api/...`` route answers with."""

from __future__ import annotations

from typing import Any

from robolake.console.html import badge, e, form, metadata, page, section, short, size, table, url, when


def stack_page(v: dict[str, Any]) -> str:
    comps = table(
        ["component", "endpoint", "health", "pid"],
        (
            [e(c["name"]), f"<code>{e(c['endpoint'])}</code>", badge(c["healthy"]), e(c["pid"] or "-")]
            for c in v["components"]
        ),
        cls="components",
    )
    cluster = v["cluster"] or {}
    summary = (
        f'<p id="summary">{badge(v["healthy"], "stack healthy", "stack degraded")} '
        f'<span id="nodes-online">{e(cluster.get("servers_online", 0))}</span> of '
        f"{e(cluster.get('servers_total', 0))} MinIO nodes online, "
        f"{e(cluster.get('drives_online', 0))} drives online, {e(cluster.get('drives_offline', 0))} offline, "
        f"parity EC:{e(cluster.get('parity'))}</p>"
    )
    nodes = _nodes(v["nodes"]) if v["nodes"] else f'<p class="error">{e(v["nodes_error"])}</p>'
    cap = v["capacity"]
    capacity = (
        f"<p>raw drive space: {size(cap['raw_used_bytes'])} used of {size(cap['raw_total_bytes'])} "
        f"({cap['drives_ok']} of {cap['drives']} drives ok); usable space is smaller by the parity share</p>"
    )
    buckets = table(
        ["bucket", "objects", "size"],
        (
            [
                f"<code>{e(b['name'])}</code>",
                f"{'≥ ' if b['at_least'] else ''}{b['objects']:,}",
                size(b["bytes"]),
            ]
            for b in v["buckets"]
        ),
        cls="buckets",
    )
    body = summary + section("Components", comps) + section("Nodes and drives", capacity + nodes)
    return page("Stack", "stack", body + section("Buckets", buckets))


def _nodes(nodes: list[dict[str, Any]]) -> str:
    """One row per drive, grouped by node (drive paths shown without the node's URL)."""
    rows = []
    for n in sorted(nodes, key=lambda node: str(node["endpoint"])):
        state = badge(n["state"] == "online", "online", n["state"] or "offline")
        for i, d in enumerate(n["drives"]):
            path = str(d["path"]).removeprefix(f"http://{n['endpoint']}").removeprefix(f"https://{n['endpoint']}")
            rows.append(
                [
                    f"<code>{e(n['endpoint'])}</code> {state}" if i == 0 else "",
                    f"<code>{e(path)}</code>",
                    badge(d["state"] == "ok", d["state"], d["state"] or "unknown"),
                    size(d["used_bytes"]),
                    size(d["total_bytes"]),
                ]
            )
    return table(["node", "drive", "state", "used", "total"], rows, cls="drives")


def versions_page(v: dict[str, Any], diff: dict[str, Any] | None) -> str:
    repo = v["repo"]
    pick = form("/versions", [("repo", "repository", repo), ("ref", "ref", v["ref"])], "Show")
    repos = " ".join(f'<a href="{e(url("/versions", repo=r))}">{e(r)}</a>' for r in v["repositories"])
    branches = table(
        ["branch", "commit"],
        (
            [f'<a href="{e(url("/versions", repo=repo, ref=b["id"]))}">{e(b["id"])}</a>', short(b["commit_id"])]
            for b in v["branches"]
        ),
        cls="branches",
    )
    tags = (
        table(
            ["tag", "commit"],
            (
                [f'<a href="{e(url("/versions", repo=repo, ref=t["id"]))}">{e(t["id"])}</a>', short(t["commit_id"])]
                for t in v["tags"]
            ),
            cls="tags",
        )
        if v["tags"]
        else '<p class="muted">no tags</p>'
    )
    commits = table(
        ["commit", "message", "committer", "date", "metadata", ""],
        (
            [
                short(c["id"]),
                e(c["message"]),
                e(c["committer"]),
                e(when(c["creation_date"])),
                metadata(c["metadata"]),
                _diff_link(repo, c) + f' <a href="{e(url("/episodes", ref=c["id"]))}">episodes</a>',
            ]
            for c in v["commits"]
        ),
        cls="commits",
    )
    body = f"<p>repositories: {repos}</p>{pick}"
    body += section("Branches", branches) + section("Tags", tags)
    body += section(f"Commits of {v['ref']} (newest first)", commits)
    left = diff["left"] if diff else ""
    right = diff["right"] if diff else v["ref"]
    diff_form = form("/versions", [("repo", "", repo), ("left", "from", left), ("right", "to", right)], "Diff")
    body += section("Diff", diff_form.replace('name="repo"', 'name="repo" type=hidden') + _diff(diff), ident="diff")
    return page("Versions", "versions", body)


def _diff_link(repo: str, c: dict[str, Any]) -> str:
    if not c["parents"]:
        return ""
    return f'<a href="{e(url("/versions", repo=repo, left=c["parents"][0], right=c["id"]))}#diff">diff</a>'


def _diff(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return '<p class="muted">pick two refs</p>'
    counts = ", ".join(f"{n} {kind}" for kind, n in diff["counts"].items())
    head = (
        f'<p id="diff-summary">{short(diff["left_commit"])} → {short(diff["right_commit"])}: {e(counts)}'
        f"{' (first entries only)' if diff['truncated'] else ''}</p>"
    )
    rows = []
    for name, changes in [*diff["episodes"].items(), ("other files", diff["other"])]:
        if any(changes.values()):
            cells = [f"{len(changes[k])}" if changes[k] else "" for k in ("added", "removed", "changed", "conflict")]
            paths = "<br>".join(e(p) for k in changes for p in changes[k][:8])
            rows.append([e(name), *cells, f"<small>{paths}</small>"])
    if not rows:
        return head + '<p class="muted">no differences</p>'
    return head + table(["episode", "added", "removed", "changed", "conflict", "paths"], rows, cls="diff")


def metrics_page(panels: list[dict[str, str]], runs: list[dict[str, Any]] | None, runs_error: str | None) -> str:
    charts = "".join(
        f'<figure class="chart" data-panel="{i}"><figcaption>{e(p["row"])}: {e(p["title"])}</figcaption>'
        f'<div class="plot" id="panel-{i}"><span class="muted">loading…</span></div></figure>'
        for i, p in enumerate(panels)
    )
    body = section("Last hour (Prometheus)", f'<div class="charts" id="charts">{charts}</div>')
    body += section("Benchmark runs (s3://umi-experiments/benchmarks/)", _runs(runs, runs_error), ident="bench")
    return page("Metrics", "metrics", body, data={"panels": panels, "api": "/api/metrics"})


def _runs(runs: list[dict[str, Any]] | None, problem: str | None) -> str:
    if problem:
        return f'<p class="error">{e(problem)}</p>'
    if not runs:
        return '<p class="muted">no benchmark runs yet: run <code>robolake bench ...</code></p>'
    out = []
    for run in runs:
        files = run["files"]
        base = f"/bench/{run['run']}/"
        plots = "".join(
            f'<img class="plot-image" alt="{e(f["name"])}" src="{e(base + f["name"])}">'
            for f in files
            if f["name"].endswith(".png")
        )
        links = " ".join(
            f'<a href="{e(base + f["name"])}">{e(f["name"])}</a> ({size(f["bytes"])})'
            for f in files
            if not f["name"].endswith(".png")
        )
        out.append(f'<div class="run"><h3>{e(run["run"])}</h3><p>{links}</p><div class="plots">{plots}</div></div>')
    return "".join(out)


def episodes_page(ref: str, commit: str, datasets: list[str], dataset: str | None, rows: list[dict[str, Any]]) -> str:
    pick = form("/episodes", [("ref", "ref", ref), ("dataset", "dataset", dataset or "")], "Open")
    links = (
        " ".join(f'<a href="{e(url("/episodes", ref=ref, dataset=d))}">{e(d or "/")}</a>' for d in datasets)
        or '<span class="muted">none found</span>'
    )
    body = f"<p>ref <code>{e(ref)}</code> is commit {short(commit)}</p>{pick}<p>datasets at this commit: {links}</p>"
    if dataset is not None:
        episode_rows = (
            [
                f'<a href="{e(url("/episode", ref=commit, dataset=dataset, n=r["index"]))}">episode {r["index"]}</a>',
                "video" if r["video"] else "-",
                size(r.get("video_bytes", 0)) if r["video"] else "",
                "pose" if r["pose"] else "-",
                "gripper" if r["gripper"] else "-",
            ]
            for r in rows
        )
        listing = table(["episode", "video", "size", "pose", "gripper"], episode_rows, cls="episodes")
        body += section(f"Episodes of {dataset or '/'} ({len(rows)})", listing)
    return page("Episodes", "episodes", body)


def episode_page(ref: str, commit: str, dataset: str, ep: dict[str, Any]) -> str:
    n = ep["index"]
    video = (
        f'<video id="video" controls preload="auto" muted playsinline '
        f'src="{e(url(f"/media/video/{commit}/{n}", dataset=dataset))}"></video>'
        if ep["video"]
        else '<p class="muted">this episode has no video</p>'
    )
    strip = (
        "".join(
            f'<img class="frame" data-frame="{i}" alt="frame {i}" title="frame {i}" '
            f'src="{e(url(f"/media/frame/{commit}/{n}/{i}", dataset=dataset))}">'
            for i in ep["strip"]
        )
        or '<span class="muted">no replay-buffer frames for this episode</span>'
    )
    others = " ".join(
        f'<a href="{e(url("/episode", ref=commit, dataset=dataset, n=i))}" class="{"active" if i == n else ""}">{i}</a>'
        for i in ep["episodes"]
    )
    body = (
        f"<p>dataset <code>{e(dataset or '/')}</code> at ref <code>{e(ref)}</code> = commit "
        f'<code id="commit">{e(commit)}</code>; episodes: {others}</p>'
        f'<div class="player">{video}<div class="curves"><div class="plot" id="pose-plot"></div>'
        f'<div class="plot" id="gripper-plot"></div></div></div>'
        + section(f"Replay-buffer frames ({ep['frames']}, every {_every(ep)})", f'<div class="strip">{strip}</div>')
    )
    data = {"fps": ep["fps"], "pose": ep["pose"], "gripper": ep["gripper"], "strip": ep["strip"]}
    return page(f"Episode {n}", "episodes", body, data=data)


def _every(ep: dict[str, Any]) -> str:
    strip = ep["strip"]
    return f"~{max(1, round(ep['frames'] / len(strip)))}th" if strip else "-"


def jobs_page(v: dict[str, Any]) -> str:
    """The job board: one row per run of a processing job, with its tasks done of total."""
    if not v["jobs"]:
        empty = '<p class="muted">no processing jobs yet: run <code>robolake process ...</code></p>'
        return page("Jobs", "jobs", section(f"Processing jobs ({v['board']})", empty))
    rows = []
    for j in v["jobs"]:
        done, total = j.get("tasks_done") or 0, j.get("tasks_total")
        count = f"{e(done)} / {e(total if total is not None else '?')}"
        bar = f'<progress value="{e(done)}" max="{e(total or 1)}"></progress> {count}'
        source = j.get("source") or {}
        rate = f"{j.get('frames') or 0:,} frames, {float(j.get('frames_per_s') or 0):.1f}/s"
        out = e(j.get("branch") or "-")
        if j.get("commit_id"):
            link = url("/versions", repo=source.get("repo"), ref=j["commit_id"])
            out += f' <a href="{e(link)}">{short(j["commit_id"])}</a>'
        dashboard = f' <a href="{e(j["dashboard"])}">dashboard</a>' if j.get("dashboard") else ""
        rows.append(
            [
                f"<code>{e(j.get('job'))}</code>",
                _job_state(j),
                bar,
                e(rate),
                f"<code>{e(source.get('ref'))}</code>:<code>{e(source.get('dataset'))}</code>",
                out,
                e(when(float(j.get("started_at") or 0))),
                e(j.get("engine") or "-") + dashboard,
            ]
        )
    jobs = table(["job", "state", "tasks", "throughput", "source", "output", "started", "engine"], rows, cls="jobs")
    note = '<p class="muted" id="refreshing">refreshed every 3 s while a job runs</p>' if v["running"] else ""
    return page(
        "Jobs",
        "jobs",
        section(f"Processing jobs ({v['board']})", jobs + note),
        data={"refresh_s": 3 if v["running"] else 0},
    )


def _job_state(j: dict[str, Any]) -> str:
    state = str(j.get("state"))
    if state == "running" and j.get("stale"):
        return (
            f'<span class="badge bad">no report for {e(int(j.get("age_s") or 0))} s</span> '
            '<span class="muted">its driver stopped (killed, or its machine is gone); run the job again: '
            "the tasks done are reused</span>"
        )
    if state in ("failed", "interrupted"):
        return f'{badge(False, no=state)} <span class="error">{e(j.get("error") or "")}</span>'
    return badge(True, yes="up to date" if j.get("up_to_date") else state)
