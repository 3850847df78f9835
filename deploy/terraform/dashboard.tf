# A CloudWatch dashboard of the pipeline: the stages' Embedded Metric Format
# metrics (namespace Sandstone, dimension Stage: internal/ops/metrics/emf),
# the ERROR lines by kind (monitoring.tf's metric filters) and the state of
# every alarm. A test (dashboard_test.go) holds its metric names to those
# the EMF lines carry and its alarm list to the alarms defined here.

locals {
  # The stages that write a Rows, Bytes, Seconds and Failures line per run;
  # the audit writes its own metrics (and Seconds and Failures).
  dashboard_stages = ["ingest", "transform", "load"]
  dashboard_all    = concat(local.dashboard_stages, ["audit"])

  dashboard_alarms = concat(
    [aws_cloudwatch_metric_alarm.freshness.arn, aws_cloudwatch_metric_alarm.freshness_missing.arn, aws_cloudwatch_metric_alarm.audit_drift.arn],
    aws_cloudwatch_metric_alarm.audit_warehouse_drift[*].arn,
    aws_cloudwatch_metric_alarm.audit_not_succeeding[*].arn,
    aws_cloudwatch_metric_alarm.slot_lag[*].arn,
    [aws_cloudwatch_metric_alarm.dlq_depth.arn],
    [for a in aws_cloudwatch_metric_alarm.not_running : a.arn],
    [for a in aws_cloudwatch_metric_alarm.duration : a.arn],
    [for a in aws_cloudwatch_metric_alarm.throttles : a.arn],
    [for a in aws_cloudwatch_metric_alarm.errors : a.arn],
  )
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name_prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title       = "Behind the source (load)", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 300
          metrics     = [[local.emf_namespace, "BehindSourceSeconds", "Stage", "load", { label = "behind the source" }], [local.emf_namespace, "FreshnessSeconds", "Stage", "load", { label = "freshness" }]]
          annotations = { horizontal = [{ label = "freshness alarm", value = var.freshness_threshold_seconds }] }
          yAxis       = { left = { min = 0, label = "seconds", showUnits = false } }
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Rows written per stage", region = var.aws_region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [for s in local.dashboard_stages : [local.emf_namespace, "Rows", "Stage", s, { label = s }]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Run durations (maximum)", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 300
          metrics = [for s in local.dashboard_all : [local.emf_namespace, "Seconds", "Stage", s, { label = s }]]
          yAxis   = { left = { min = 0, label = "seconds", showUnits = false } }
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Bytes written per stage", region = var.aws_region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [for s in local.dashboard_stages : [local.emf_namespace, "Bytes", "Stage", s, { label = s }]]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title   = "Failed runs per stage", region = var.aws_region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [for s in local.dashboard_all : [local.emf_namespace, "Failures", "Stage", s, { label = s }]]
        }
      },
      {
        type = "metric", x = 12, y = 12, width = 12, height = 6
        properties = {
          title   = "ERROR lines by function and kind", region = var.aws_region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [[{ id = "errors", expression = "SEARCH('{${local.error_metric_namespace},ErrorKind}', 'Sum', 300)", label = "" }]]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 12, height = 6
        properties = {
          title = "Audit: drift found and audits that succeeded", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 3600
          metrics = [
            [local.emf_namespace, "DriftMissing", "Stage", "audit", { label = "missing from the lake" }],
            [local.emf_namespace, "DriftDeleted", "Stage", "audit", { label = "deleted, not recorded" }],
            [local.emf_namespace, "DriftWarehouse", "Stage", "audit", { label = "warehouse rows off" }],
            [local.emf_namespace, "AuditSucceeded", "Stage", "audit", { label = "audits succeeded", stat = "Sum" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 24, width = 12, height = 6
        properties = {
          title = "WAL the replication slot holds back (capture = wal)", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 300
          metrics = [
            [local.emf_namespace, "SlotRetainedBytes", "Stage", "ingest", { label = "retained on the source's disk" }],
            [local.emf_namespace, "SlotUnconfirmedBytes", "Stage", "ingest", { label = "not yet confirmed" }],
            [local.emf_namespace, "SlotSafeWALBytes", "Stage", "ingest", { label = "safe before max_slot_wal_keep_size", stat = "Minimum" }],
          ]
          annotations = { horizontal = [{ label = "slot lag alarm", value = var.slot_lag_alarm_bytes }] }
          yAxis       = { left = { min = 0, label = "bytes", showUnits = false } }
        }
      },
      {
        type = "alarm", x = 12, y = 18, width = 12, height = 6
        properties = {
          title  = "Alarms"
          alarms = local.dashboard_alarms
        }
      },
    ]
  })
}
