#!/usr/bin/env python3
"""Generates Ambit's Grafana dashboards with the Grafana Foundation SDK.

    python3 deploy/grafana/generate.py          # writes deploy/grafana/*.json
    python3 deploy/grafana/generate.py --check  # exits 1 when a file is stale

The JSON files are committed; tests/it/deploy.rs runs --check (stale files
fail) and evaluates every panel query, its variables substituted, against a
real Prometheus scraping a real agent and controller.

Every dashboard is also read back with the SDK's own model of Grafana's
dashboard schema (`Dashboard.from_json`) and must come back unchanged: a
field the schema does not know, or a value of the wrong shape, fails here.
"""

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Label filters shared by the panels; variables are regexes ("All" is .*).
SET = 'namespace=~"$namespace", device_set=~"$device_set"'
NODE = 'node=~"$node"'
# The controller's figures count only from the replica that leads: a standby
# keeps the figures of when it last led.
LEADER = "on (instance, job) group_left () (ambit_controller_leader == 1)"


def query(expr, legend="", instant=False):
    q = prometheus.Dataquery().expr(expr).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


def series(title, description, unit, *queries, width=12):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(8)
        .span(width)
    )
    for ref, q in zip("ABCDEFGH", queries):
        panel = panel.with_target(q.ref_id(ref))
    return panel


def single(title, description, unit, expr, legend="", width=6):
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(4)
        .span(width)
        .with_target(query(expr, legend, instant=True).ref_id("A"))
    )


def datasource_variable():
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name, label, metric, multi=True):
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(f"label_values({metric}, {name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
        .all_value(".*")
    )


def overview():
    devices = f"ambit_agent_devices{{{SET}, {NODE}}}"
    brokers = f'ambit_controller_brokers{{{SET}}}'
    return (
        dash.Dashboard("Ambit / Overview")
        .uid("ambit-overview")
        .description("Devices, brokers, discovery and API writes across the cluster")
        .tags(["ambit"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(datasource_variable())
        .with_variable(label_variable("namespace", "Namespace", "ambit_agent_devices"))
        .with_variable(
            label_variable(
                "device_set", "DeviceSet", 'ambit_agent_devices{namespace=~"$namespace"}'
            )
        )
        .with_variable(label_variable("node", "Node", "ambit_agent_devices"))
        .with_row(dash.Row("Devices"))
        .with_panel(
            single(
                "Devices seen",
                "Node entries of Devices: a shared device seen by 3 nodes counts 3 times",
                "short",
                f"sum({devices})",
            )
        )
        .with_panel(
            single(
                "Nodes seeing devices",
                "Nodes whose agent sees at least one device of the selected DeviceSets",
                "short",
                f"count(sum by (node) ({devices}) > 0)",
            )
        )
        .with_panel(
            single(
                "Handlers available",
                "Discovery handlers available to agents (embedded and external), over all nodes",
                "short",
                "sum(ambit_agent_handler_connected)",
            )
        )
        .with_panel(
            single(
                "Controller leaders",
                "Replicas holding the leader Lease: 1 is right, 0 means nothing reconciles",
                "short",
                "sum(ambit_controller_leader)",
            )
        )
        .with_panel(
            series(
                "Devices by DeviceSet",
                "Devices each DeviceSet has, summed over the nodes that see them",
                "short",
                query(
                    f"sum by (namespace, device_set) ({devices})",
                    "{{namespace}}/{{device_set}}",
                ),
            )
        )
        .with_panel(
            series(
                "Devices by node",
                "Devices each node's agent sees",
                "short",
                query(f"sum by (node) ({devices})", "{{node}}"),
            )
        )
        .with_row(dash.Row("Brokers"))
        .with_panel(
            series(
                "Brokers by phase",
                "Broker pods of the selected DeviceSets, by pod phase",
                "short",
                query(f"sum by (phase) ({brokers} * {LEADER})", "{{phase}}"),
            )
        )
        .with_panel(
            series(
                "Brokers wanted and ready",
                "Broker pods the Devices want (capacity and nodes permitting) and those Ready",
                "short",
                query(f"sum(ambit_controller_brokers_wanted{{{SET}}} * {LEADER})", "wanted"),
                query(f"sum(ambit_controller_brokers_ready{{{SET}}} * {LEADER})", "ready"),
            )
        )
        .with_panel(
            series(
                "Devices at capacity",
                "Devices with no free slot, by DeviceSet",
                "short",
                query(
                    f"sum by (namespace, device_set) (ambit_controller_devices_at_capacity{{{SET}}} * {LEADER})",
                    "{{namespace}}/{{device_set}}",
                ),
            )
        )
        .with_panel(
            single(
                "Reconcile time (p90)",
                "90th percentile of one reconcile's duration over the time range, by controller",
                "s",
                "histogram_quantile(0.9, sum by (le, controller) "
                "(increase(ambit_controller_reconcile_duration_seconds_bucket[$__range])))",
                "{{controller}}",
                width=12,
            )
        )
        .with_row(dash.Row("Discovery, API writes and errors"))
        .with_panel(
            single(
                "Discovery latency (p90)",
                "From starting discovery to the handler's first complete device set, "
                "90th percentile since the agents started, by handler (discovery starts "
                "seldom, often before the first scrape: a rate would miss it)",
                "s",
                "histogram_quantile(0.9, sum by (le, handler) "
                "(ambit_agent_discovery_latency_seconds_bucket))",
                "{{handler}}",
                width=12,
            )
        )
        .with_panel(
            series(
                "API writes by agents",
                "Writes of all agents to the Kubernetes API per second, by verb and resource "
                "(steady state: zero)",
                "wps",
                query(
                    "sum by (verb, resource) (rate(ambit_agent_api_writes_total[$__rate_interval]))",
                    "{{verb}} {{resource}}",
                ),
            )
        )
        .with_panel(
            series(
                "Discovery errors",
                "Failed discoveries per second, by handler and category",
                "ops",
                query(
                    "sum by (handler, category) "
                    "(rate(ambit_agent_discovery_errors_total[$__rate_interval]))",
                    "{{handler}}: {{category}}",
                ),
            )
        )
        .with_panel(
            series(
                "Reconcile errors",
                "Failed reconciles of the controller per second, by controller and category",
                "ops",
                query(
                    "sum by (controller, category) "
                    "(rate(ambit_controller_reconcile_errors_total[$__rate_interval]))",
                    "{{controller}}: {{category}}",
                ),
            )
        )
    )


def agent():
    instance = 'instance=~"$instance"'
    return (
        dash.Dashboard("Ambit / Agent")
        .uid("ambit-agent")
        .description("One node's agent: its handlers, devices, discovery and API writes")
        .tags(["ambit"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(datasource_variable())
        .with_variable(label_variable("node", "Node", "ambit_agent_devices", multi=False))
        .with_variable(
            label_variable(
                "instance", "Agent", 'ambit_agent_devices{node=~"$node"}', multi=False
            )
        )
        .with_variable(label_variable("namespace", "Namespace", 'ambit_agent_devices{node=~"$node"}'))
        .with_variable(
            label_variable(
                "device_set",
                "DeviceSet",
                'ambit_agent_devices{node=~"$node", namespace=~"$namespace"}',
            )
        )
        .with_row(dash.Row("Handlers and devices"))
        .with_panel(
            series(
                "Handlers",
                "Whether each discovery handler is available to this agent (1) or not (0)",
                "short",
                query(f"ambit_agent_handler_connected{{{instance}}}", "{{handler}} ({{kind}})"),
            )
        )
        .with_panel(
            series(
                "Devices by DeviceSet",
                "Devices this node sees, per DeviceSet",
                "short",
                query(
                    f"sum by (namespace, device_set) (ambit_agent_devices{{{SET}, {NODE}}})",
                    "{{namespace}}/{{device_set}}",
                ),
            )
        )
        .with_panel(
            series(
                "Devices vanishing and returning",
                "Known devices leaving the handler's reports and coming back: the flapping "
                "that grace periods hide",
                "short",
                query(
                    "sum by (device_set, change) (increase("
                    f"ambit_agent_device_presence_changes_total{{{SET}, {NODE}}}[$__rate_interval]))",
                    "{{device_set}} {{change}}",
                ),
                width=24,
            )
        )
        .with_row(dash.Row("Discovery and API writes"))
        .with_panel(
            single(
                "Discovery latency (p50)",
                "Median time to the handler's first complete device set, since the agent started",
                "s",
                "histogram_quantile(0.5, sum by (le) "
                f"(ambit_agent_discovery_latency_seconds_bucket{{{instance}}}))",
            )
        )
        .with_panel(
            single(
                "Discovery latency (p90)",
                "90th percentile time to the handler's first complete device set, since the agent started",
                "s",
                "histogram_quantile(0.9, sum by (le) "
                f"(ambit_agent_discovery_latency_seconds_bucket{{{instance}}}))",
            )
        )
        .with_panel(
            single(
                "API writes in range",
                "Writes this agent made to the Kubernetes API over the time range",
                "short",
                f"sum(increase(ambit_agent_api_writes_total{{{instance}}}[$__range]))",
                width=12,
            )
        )
        .with_panel(
            series(
                "API writes",
                "Writes per second by verb and resource (steady state: zero)",
                "wps",
                query(
                    "sum by (verb, resource) "
                    f"(rate(ambit_agent_api_writes_total{{{instance}}}[$__rate_interval]))",
                    "{{verb}} {{resource}}",
                ),
            )
        )
        .with_panel(
            series(
                "Discovery errors",
                "Failed discoveries per second, by handler and category",
                "ops",
                query(
                    "sum by (handler, category) "
                    f"(rate(ambit_agent_discovery_errors_total{{{instance}}}[$__rate_interval]))",
                    "{{handler}}: {{category}}",
                ),
            )
        )
    )


def render(builder):
    """The dashboard as JSON text, after checking it against the schema model."""
    built = builder.build()
    data = json.loads(json.dumps(built, cls=JSONEncoder))
    again = json.loads(json.dumps(model.Dashboard.from_json(data), cls=JSONEncoder))
    if again != data:
        raise SystemExit(f"{built.title}: does not survive Grafana's dashboard schema model")
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


DASHBOARDS = {"ambit-overview.json": overview, "ambit-agent.json": agent}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for file, make in DASHBOARDS.items():
        text = render(make())
        path = HERE / file
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(file)
        else:
            path.write_text(text)
    if stale:
        print(
            f"stale: {', '.join(stale)}; run `python3 deploy/grafana/generate.py` and commit",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
