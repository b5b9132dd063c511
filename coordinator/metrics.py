"""Prometheus metrics, read from the store and the hub when scraped (nothing to keep in sync).

Exposed at ``/metrics`` in Prometheus' text format by :mod:`coordinator.api.routes.dashboard`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from coordinator.service import Coordinator

# Records the hub stored and messages it refused are counted by the ingest writer as it goes
# (coordinator/ingest.py), not from the tables: those are pruned by the retention rule.
_KINDS = ("telemetry", "meter", "ack", "alarm", "forecast", "config_result", "borrow")


class CoordinatorCollector(Collector):
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    def collect(self) -> Iterator[Metric]:
        c = self.coord
        analytics = c.analytics
        g = GaugeMetricFamily("gridswarm_intervals", "Delivery intervals by status", labels=["status"])
        for status, n in sorted(analytics.interval_counts().items()):
            g.add_metric([status], n)
        yield g
        failed = GaugeMetricFamily("gridswarm_intervals_failed", "Intervals the market loop gave up on")
        failed.add_metric([], len(c.loop.failed) if c.loop else 0)
        yield failed
        n_cleared, clear_s = analytics.clearing_totals()
        clear = CounterMetricFamily("gridswarm_clearing_seconds", "Time to clear and commit intervals")
        clear.add_metric([], clear_s)
        yield clear
        clear_n = CounterMetricFamily("gridswarm_clearing_count", "Intervals cleared and committed")
        clear_n.add_metric([], n_cleared)
        yield clear_n
        gas = GaugeMetricFamily("gridswarm_interval_gas", "Gas of the latest settled interval", labels=["step"])
        latest = analytics.latest_settled()
        if latest:
            gas.add_metric(["commit"], int(latest["gas_commit"] or 0))
            gas.add_metric(["settle"], int(latest["gas_settle"] or 0))
        yield gas
        acc = CounterMetricFamily("gridswarm_messages_accepted", "Agent records accepted, by kind", labels=["kind"])
        ingest = c.hub.ingest
        for kind in sorted(set(_KINDS) | set(ingest.accepted)):
            acc.add_metric([kind], ingest.accepted.get(kind, 0))
        yield acc
        ref = CounterMetricFamily("gridswarm_messages_refused", "Agent messages refused, by reason", labels=["reason"])
        for reason, n in sorted(ingest.refused.items()):
            ref.add_metric([reason], n)
        yield ref
        inflight = GaugeMetricFamily("gridswarm_hub_inflight", "Agent messages being handled (shed past the limit)")
        inflight.add_metric([], c.hub.inflight)
        yield inflight
        agents = GaugeMetricFamily("gridswarm_agents_connected", "Agents with a live link")
        agents.add_metric([], len(c.hub.links))
        yield agents
        alarms = GaugeMetricFamily("gridswarm_alarms_unacknowledged", "Alarms no operator has acknowledged")
        alarms.add_metric([], analytics.unacknowledged_alarms())
        yield alarms
        from coordinator.store.analytics import SETTLE_BUCKETS_S

        counts, n, total = analytics.settlement_latency()
        settle = HistogramMetricFamily(
            "gridswarm_settlement_latency_seconds",
            "From the end of an interval's delivery to the market loop seeing it settled on chain (coordinator clock)",
        )
        buckets = [(repr(b), c) for b, c in zip(SETTLE_BUCKETS_S, counts, strict=True)]
        settle.add_metric([], [*buckets, ("+Inf", n)], total)
        yield settle
        sites, pending, top = analytics.outbox_backlog(c.clock.now())
        for name, doc, value in (
            ("gridswarm_agent_outbox_pending", "Records waiting in agents' outboxes, summed over the sites that "
             "reported in the last hour (each site's newest telemetry)", pending),
            ("gridswarm_agent_outbox_pending_max",
             "The largest outbox backlog one site reported in the last hour", top),
            ("gridswarm_agents_reporting_outbox", "Sites that reported their outbox backlog in the last hour", sites),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g


def registry_for(coord: Coordinator) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CoordinatorCollector(coord))
    return reg
