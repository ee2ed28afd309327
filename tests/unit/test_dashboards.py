"""The dashboard and rule files in deploy/ are what the generators make (their PromQL is tested live in
tests/integration/test_monitoring.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from robolake.stack.dashboards import ALERTS, PANELS, grafana_dashboard, render_dashboard, render_rules
from robolake.stack.monitoring import RULES_FILE, Targets, scrape_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REMAKE = "python -c 'from robolake.stack.dashboards import *; print(render_rules(), end=\"\")' > deploy/..."


def test_deploy_files_are_the_generated_ones() -> None:
    assert (DEPLOY / "prometheus-rules.yml").read_text() == render_rules(), REMAKE
    assert (DEPLOY / "grafana" / "robolake.json").read_text() == render_dashboard(), REMAKE
    assert scrape_config(Targets.compose())["rule_files"] == [RULES_FILE]


def test_dashboard_model_is_grafanas_shape() -> None:
    doc = json.loads(render_dashboard())
    assert doc == grafana_dashboard() and doc["schemaVersion"] == 39
    graphs = [p for p in doc["panels"] if p["type"] == "timeseries"]
    assert len(graphs) == len(PANELS) and len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    rows = [p["title"] for p in doc["panels"] if p["type"] == "row"]
    assert rows == list(dict.fromkeys(p.row for p in PANELS))
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in graphs}
    assert len(cells) == len(graphs), "two panels on the same spot"
    assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in graphs)


def test_rules_cover_the_issues_alerts() -> None:
    doc = yaml.safe_load(render_rules())
    names = [r["alert"] for r in doc["groups"][0]["rules"]]
    assert names == [a.name for a in ALERTS]
    for wanted in ("MinioNodeDown", "MinioDriveOffline", "AcceleratorHitRatioCollapse", "S3ServerErrors"):
        assert wanted in names
