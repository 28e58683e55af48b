#!/usr/bin/env python3
"""Generates weir-dashboard.json (the Grafana dashboard for the node's
/metrics) next to this file: `python3 ops/deploy/grafana/gen_dashboard.py`.
Edit panels here, not in the JSON."""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"'
RI = "$__rate_interval"

panels = []
pid = [0]
y = [0]

def nid():
    pid[0] += 1
    return pid[0]

def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1

def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref,
            "range": True, "editorMode": "code"}

def ts(title, desc, targets, unit, x, w, h=8, extra_defaults=None, overrides=None, stack=False, decimals=None):
    defaults = {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 30,
                   "showPoints": "never", "spanNulls": False,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
        "color": {"mode": "palette-classic"},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if extra_defaults:
        defaults.update(extra_defaults)
    p = {"type": "timeseries", "title": title, "description": desc, "id": nid(), "datasource": DS,
         "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
         "targets": [target(e, l, chr(65 + i)) for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
         "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                "calcs": ["mean", "max", "lastNotNull"]},
                     "tooltip": {"mode": "multi", "sort": "desc"}}}
    panels.append(p)
    return p

def stat(title, desc, expr, x, w, thresholds, unit="short", h=4):
    panels.append({"type": "stat", "title": title, "description": desc, "id": nid(), "datasource": DS,
                   "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
                   "targets": [target(expr, "", "A")],
                   "fieldConfig": {"defaults": {"unit": unit, "color": {"mode": "thresholds"},
                                                "thresholds": {"mode": "absolute", "steps": thresholds}},
                                   "overrides": []},
                   "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                               "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                               "orientation": "auto", "textMode": "auto"}})

GREEN = {"color": "green", "value": None}
def red_at(v):
    return [GREEN, {"color": "red", "value": v}]

# ---------------------------------------------------------------- overview
row("Overview")
stat("Nodes reporting", "Nodes whose /metrics endpoint was scraped (weir_node_info).",
     f'count(weir_node_info{{{SEL}}})', 0, 4, [{"color": "blue", "value": None}])
stat("Under-replicated partitions", "Sum over nodes of led partitions whose ISR is smaller than their replica set. Normal: 0.",
     f'sum(weir_under_replicated_partitions{{{SEL}}})', 4, 4, red_at(1))
stat("Offline partitions", "Sum over nodes of hosted partitions stopped after a storage failure. Normal: 0.",
     f'sum(weir_offline_partitions{{{SEL}}})', 8, 4, red_at(1))
stat("Data dirs refusing appends", "Data directories below data_dir_min_free_bytes (weir_data_dir_appends_blocked). Normal: 0.",
     f'sum(weir_data_dir_appends_blocked{{{SEL}}})', 12, 4, red_at(1))
stat("Partition replicas", "Sum of weir_partitions over the selected nodes.",
     f'sum(weir_partitions{{{SEL}}})', 16, 4, [{"color": "blue", "value": None}])
stat("Client connections", "Sum of weir_connections_open over the selected nodes.",
     f'sum(weir_connections_open{{{SEL}}})', 20, 4, [{"color": "blue", "value": None}])
y[0] += 4

# ---------------------------------------------------------------- throughput
row("Throughput per topic")
ts("Bytes in per topic", "Bytes of record batches appended per second (Kafka BytesInPerSec), summed over the selected nodes.",
   [(f'sum by (topic) (rate(weir_bytes_in_total{{{SEL},topic=~"$topic"}}[{RI}]))', "{{topic}}")],
   "Bps", 0, 12, stack=True)
ts("Bytes out per topic", "Bytes of record batches returned by Fetch per second (Kafka BytesOutPerSec); includes follower fetches.",
   [(f'sum by (topic) (rate(weir_bytes_out_total{{{SEL},topic=~"$topic"}}[{RI}]))', "{{topic}}")],
   "Bps", 12, 12, stack=True)
y[0] += 8
ts("Messages in per topic", "Records appended per second (Kafka MessagesInPerSec).",
   [(f'sum by (topic) (rate(weir_messages_in_total{{{SEL},topic=~"$topic"}}[{RI}]))', "{{topic}}")],
   "short", 0, 12, stack=True)
ts("Failed produces per topic", "Partition appends refused or failed per second (Kafka FailedProduceRequestsPerSec). Normal: 0.",
   [(f'sum by (topic) (rate(weir_produce_failures_total{{{SEL},topic=~"$topic"}}[{RI}]))', "{{topic}}")],
   "short", 12, 12)
y[0] += 8
ts("Bytes in / out per node", "Total appended and fetched bytes per second, per node: shows whether load is balanced.",
   [(f'sum by (instance) (rate(weir_bytes_in_total{{{SEL}}}[{RI}]))', "in {{instance}}"),
    (f'sum by (instance) (rate(weir_bytes_out_total{{{SEL}}}[{RI}]))', "out {{instance}}")],
   "Bps", 0, 24)
y[0] += 8

# ---------------------------------------------------------------- requests
row("Requests per API")
ts("Request rate per API", "Kafka requests handled per second, by API (weir_requests_total).",
   [(f'sum by (api) (rate(weir_requests_total{{{SEL},api=~"$api"}}[{RI}]))', "{{api}}")],
   "reqps", 0, 12)
ts("Request time p99 per API",
   "99th percentile of the time from a request's arrival to its response being written (weir_request_duration_seconds). "
   "Produce with acks=all and Fetch long polls (max_wait_ms) include their waiting time. Buckets end at 10 s.",
   [(f'histogram_quantile(0.99, sum by (api, le) (rate(weir_request_duration_seconds_bucket{{{SEL},api=~"$api"}}[{RI}])))', "{{api}}")],
   "s", 12, 12)
y[0] += 8
ts("Request time p50 per API", "Median request time, by API.",
   [(f'histogram_quantile(0.5, sum by (api, le) (rate(weir_request_duration_seconds_bucket{{{SEL},api=~"$api"}}[{RI}])))', "{{api}}")],
   "s", 0, 12)
ts("Request time mean per API", "Mean request time (rate of _sum over rate of _count), by API.",
   [(f'sum by (api) (rate(weir_request_duration_seconds_sum{{{SEL},api=~"$api"}}[{RI}])) / '
     f'sum by (api) (rate(weir_request_duration_seconds_count{{{SEL},api=~"$api"}}[{RI}]))', "{{api}}")],
   "s", 12, 12)
y[0] += 8
ts("Produce and Fetch p99 per node", "p99 request time of Produce and Fetch, per node: finds the one slow node.",
   [(f'histogram_quantile(0.99, sum by (instance, le) (rate(weir_request_duration_seconds_bucket{{{SEL},api="Produce"}}[{RI}])))', "Produce {{instance}}"),
    (f'histogram_quantile(0.99, sum by (instance, le) (rate(weir_request_duration_seconds_bucket{{{SEL},api="Fetch"}}[{RI}])))', "Fetch {{instance}}")],
   "s", 0, 24)
y[0] += 8

ts("Produce time by phase (mean)", "Where Produce time goes (weir_request_phase_seconds): queue (arrival to handler start), local (handler at work), "
   "remote (parked on other shards or the group commit's fdatasync), response_queue (waiting behind earlier responses on the connection), response_send.",
   [(f'sum by (phase) (rate(weir_request_phase_seconds_sum{{{SEL},api="Produce"}}[{RI}])) / '
     f'sum by (phase) (rate(weir_request_phase_seconds_count{{{SEL},api="Produce"}}[{RI}]))', "{{phase}}")],
   "s", 0, 12, stack=True)
ts("Fetch time by phase (mean)", "Where Fetch time goes; remote is the long poll (max_wait_ms / min_bytes) waiting for data.",
   [(f'sum by (phase) (rate(weir_request_phase_seconds_sum{{{SEL},api="Fetch"}}[{RI}])) / '
     f'sum by (phase) (rate(weir_request_phase_seconds_count{{{SEL},api="Fetch"}}[{RI}]))', "{{phase}}")],
   "s", 12, 12, stack=True)
y[0] += 8

# ---------------------------------------------------------------- flush
row("Log flush")
ts("Flush rate per node", "Flush cycles of partition logs per second: O_DIRECT write, plus the grouped fdatasync in durability = \"fsync\" (weir_log_flushes_total).",
   [(f'sum by (instance) (rate(weir_log_flushes_total{{{SEL}}}[{RI}]))', "{{instance}}")],
   "ops", 0, 12)
ts("Flush time per node", "Duration of one flush cycle (write plus fdatasync): p50, p99 and p99.9 (weir_log_flush_duration_seconds). "
   "A rising p99 with flat load points at the device.",
   [(f'histogram_quantile(0.5, sum by (instance, le) (rate(weir_log_flush_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p50 {{instance}}"),
    (f'histogram_quantile(0.99, sum by (instance, le) (rate(weir_log_flush_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p99 {{instance}}"),
    (f'histogram_quantile(0.999, sum by (instance, le) (rate(weir_log_flush_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p99.9 {{instance}}")],
   "s", 12, 12)
y[0] += 8

# ---------------------------------------------------------------- partitions
row("Partitions and replication")
ts("Partitions and leaders per node", "Hosted partition replicas (PartitionCount) and partitions this node leads (LeaderCount). Leaders should be balanced across nodes.",
   [(f'sum by (instance) (weir_partitions{{{SEL}}})', "partitions {{instance}}"),
    (f'sum by (instance) (weir_leader_partitions{{{SEL}}})', "leaders {{instance}}")],
   "short", 0, 12, decimals=0)
ts("Under-replicated and offline partitions per node", "UnderReplicatedPartitions (counted by the leader) and OfflinePartitionsCount. Both should be 0.",
   [(f'sum by (instance) (weir_under_replicated_partitions{{{SEL}}})', "under-replicated {{instance}}"),
    (f'sum by (instance) (weir_offline_partitions{{{SEL}}})', "offline {{instance}}")],
   "short", 12, 12, decimals=0,
   extra_defaults={"thresholds": {"mode": "absolute", "steps": red_at(1)}})
panels[-1]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "line"}
y[0] += 8

# ---------------------------------------------------------------- storage
row("Data directories")
free_ov = [{"matcher": {"id": "byRegexp", "options": "threshold.*"},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                           {"id": "custom.fillOpacity", "value": 0}]}]
ts("Free space vs threshold", "Bytes available to the node on each data directory's filesystem (statvfs f_bavail: without root-reserved blocks), "
   "and data_dir_min_free_bytes (dashed): below it the directory refuses appends.",
   [(f'weir_data_dir_bytes_free{{{SEL}}}', "{{instance}} {{dir}}"),
    (f'max by (instance) (weir_data_dir_min_free_bytes{{{SEL}}})', "threshold {{instance}}")],
   "bytes", 0, 12, overrides=free_ov)
ts("Appends blocked", "1 while a data directory refuses appends because its free space is below data_dir_min_free_bytes (weir_data_dir_appends_blocked). Producers then get the retriable KAFKA_STORAGE_ERROR.",
   [(f'weir_data_dir_appends_blocked{{{SEL}}}', "{{instance}} {{dir}}")],
   "short", 12, 12, extra_defaults={"min": 0, "max": 1, "decimals": 0,
                                    "thresholds": {"mode": "absolute", "steps": red_at(1)}})
panels[-1]["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "line"
panels[-1]["fieldConfig"]["defaults"]["custom"]["lineInterpolation"] = "stepAfter"
y[0] += 8
ts("Used fraction", "Used / (used + available) per data directory's filesystem.",
   [(f'weir_data_dir_bytes_used{{{SEL}}} / (weir_data_dir_bytes_used{{{SEL}}} + weir_data_dir_bytes_free{{{SEL}}})', "{{instance}} {{dir}}")],
   "percentunit", 0, 12, extra_defaults={"min": 0, "max": 1})
ts("Free space in 6 h (linear forecast)", "predict_linear over the last 6 hours: where free space is heading. A line crossing the threshold "
   "means retention (retention.ms / retention.bytes) or capacity needs attention before appends stop.",
   [(f'predict_linear(weir_data_dir_bytes_free{{{SEL}}}[6h], 6 * 3600)', "{{instance}} {{dir}}"),
    (f'max by (instance) (weir_data_dir_min_free_bytes{{{SEL}}})', "threshold {{instance}}")],
   "bytes", 12, 12, overrides=free_ov)
y[0] += 8

# ---------------------------------------------------------------- memory, connections
row("Cache, purgatory and connections")
ts("Batch cache bytes per node", "Bytes held by the shards' hot-tail batch caches (all shards of a node). Capacity is shards x batch_cache_bytes_per_shard.",
   [(f'sum by (instance) (weir_batch_cache_bytes{{{SEL}}})', "{{instance}}")],
   "bytes", 0, 8)
ts("Fetch purgatory per node", "Fetch requests parked waiting for data (long poll with max_wait_ms/min_bytes); bounded by 4096 per shard.",
   [(f'sum by (instance) (weir_fetch_purgatory_size{{{SEL}}})', "{{instance}}")],
   "short", 8, 8)
ts("Client connections per node", "Kafka client connections open (weir_connections_open).",
   [(f'sum by (instance) (weir_connections_open{{{SEL}}})', "{{instance}}")],
   "short", 16, 8)
y[0] += 8

row("Consumer groups")
ts("Consumer lag per group and topic", "Records between each group's committed offset and the partition's high watermark, summed over partitions "
   "(weir_consumer_group_lag, reported by the node coordinating the group for partitions it leads).",
   [(f'sum by (group, topic) (weir_consumer_group_lag{{{SEL},topic=~"$topic"}})', "{{group}} {{topic}}")],
   "short", 0, 12)
ts("Produce purgatory per node", "Produce requests (acks 1 or all) parked waiting for their appends to become durable (weir_produce_purgatory_size).",
   [(f'sum by (instance) (weir_produce_purgatory_size{{{SEL}}})', "{{instance}}")],
   "short", 12, 12)
y[0] += 8

def var_query(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": f"{name}-var"},
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0, "regex": "", "options": []}

dashboard = {
    "title": "Weir node",
    "uid": "weir-node",
    "description": "Weir storage nodes: throughput, request time, flushes, partitions, data-dir space. Metrics from weir-node's /metrics (metrics_listen).",
    "tags": ["weir", "kafka"],
    "timezone": "",
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "timepicker": {},
    "fiscalYearStartMonth": 0,
    "liveNow": False,
    "links": [],
    "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                              "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                              "name": "Annotations & Alerts", "type": "dashboard"}]},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""},
        var_query("job", "Job", "label_values(weir_node_info, job)"),
        var_query("instance", "Node", 'label_values(weir_node_info{job=~"$job"}, instance)'),
        var_query("topic", "Topic", 'label_values(weir_bytes_in_total{job=~"$job",instance=~"$instance"}, topic)'),
        var_query("api", "API", 'label_values(weir_requests_total{job=~"$job",instance=~"$instance"}, api)'),
    ]},
    "panels": panels,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "weir-dashboard.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
