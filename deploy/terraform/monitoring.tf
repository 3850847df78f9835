# Alarms, and the e-mail they send. Every alarm's name and description say
# which function and what kind of trouble, since that is what the SNS e-mail
# shows. docs/deploy.md explains each alarm and where to look next.

# Not KMS-encrypted: CloudWatch alarms cannot publish to a topic encrypted
# with the AWS-managed SNS key, and the messages hold no data.
resource "aws_sns_topic" "alarms" {
  name = "${var.name_prefix}-alarms"
}

resource "aws_sns_topic_subscription" "email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Every failure writes exactly one JSON line with level ERROR and its
# error_kind (internal/logging); each function's filter counts them by kind.
# The pattern names error_kind so that the dimension is always present.
resource "aws_cloudwatch_log_metric_filter" "errors" {
  for_each = local.stages

  name           = "${local.function_names[each.key]}-error-lines"
  log_group_name = aws_cloudwatch_log_group.stage[each.key].name
  pattern        = "{ $.level = \"ERROR\" && $.error_kind = * }"

  metric_transformation {
    namespace = local.error_metric_namespace
    name      = local.function_names[each.key]
    value     = "1"
    unit      = "Count"
    dimensions = {
      ErrorKind = "$.error_kind"
    }
  }
}

# One alarm per function and error kind. It fires on the first ERROR line
# and clears after 30 minutes without one, so a failure that repeats on
# every 10-minute run sends one e-mail, not one per run.
resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each = local.error_alarms

  alarm_name          = "${local.function_names[each.value.stage]}-error-${each.value.kind}"
  alarm_description   = "${local.function_names[each.value.stage]} logged an ERROR of kind ${each.value.kind}: ${local.error_kinds[each.value.kind]}. Logs: ${aws_cloudwatch_log_group.stage[each.value.stage].name} (filter error_kind = \"${each.value.kind}\")."
  namespace           = local.error_metric_namespace
  metric_name         = local.function_names[each.value.stage]
  dimensions          = { ErrorKind = each.value.kind }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 6
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  depends_on = [aws_cloudwatch_log_metric_filter.errors]
}

# A run that nears its timeout will soon be cut off mid-batch: the stage
# stops at a batch boundary, but a backlog that keeps it this long needs
# more memory (CPU) or a longer timeout.
resource "aws_cloudwatch_metric_alarm" "duration" {
  for_each = local.stages

  alarm_name          = "${local.function_names[each.key]}-duration-near-timeout"
  alarm_description   = "${local.function_names[each.key]} ran longer than ${floor(var.duration_alarm_ratio * 100)}% of its ${local.lambda_timeout_seconds[each.key]} s timeout. Raise lambda_timeout_seconds or lambda_memory_mb for ${each.key}, or look for a slow database."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.stage[each.key].function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = local.lambda_timeout_seconds[each.key] * 1000 * var.duration_alarm_ratio
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# With one reserved slot, an event that arrives while a run is going is
# throttled and retried by Lambda: harmless once, a problem if it lasts.
resource "aws_cloudwatch_metric_alarm" "throttles" {
  for_each = local.stages

  alarm_name          = "${local.function_names[each.key]}-throttled"
  alarm_description   = "${local.function_names[each.key]} was throttled in each of the last 15 minutes: a run holds its single slot for long, or events pile up. Check its duration and the account's Lambda concurrency."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.stage[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# The heartbeat: ingest runs on every tick, data or not.
resource "aws_cloudwatch_metric_alarm" "ingest_not_running" {
  alarm_name          = "${local.function_names["ingest"]}-not-running"
  alarm_description   = "${local.function_names["ingest"]} was not invoked for 30 minutes: the schedule ${aws_scheduler_schedule.ingest.name} is disabled or failing (check its role), or the function was removed."
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.stage["ingest"].function_name }
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${aws_sqs_queue.dlq.name}-not-empty"
  alarm_description   = "An invocation of a Sandstone function failed after all retries (or waited too long) and was recorded in ${aws_sqs_queue.dlq.name}. The message names the function and the error; the error alarms and logs say more. Later runs pick up the work: delete the message once understood."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Load reports, per batch, how long the newest source change in it took to
# reach the warehouse (EMF metric FreshnessSeconds, dimension Stage = load).
resource "aws_cloudwatch_metric_alarm" "freshness" {
  alarm_name          = "${local.function_names["load"]}-freshness"
  alarm_description   = "A totesys change took more than ${var.freshness_threshold_seconds} s to reach the warehouse (${local.function_names["load"]}, metric ${local.emf_namespace}/FreshnessSeconds). Look for error alarms of ingest, transform or load, or a backlog (duration and throttle alarms)."
  namespace           = local.emf_namespace
  metric_name         = "FreshnessSeconds"
  dimensions          = { Stage = "load" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.freshness_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# The audit's findings (EMF, dimension Stage = audit): rows of totesys that
# never reached the ingestion bucket, and deletions nothing recorded. Each
# audit writes one datapoint; missing data keeps the state, so the alarm
# stays in ALARM until an audit finds no drift.
resource "aws_cloudwatch_metric_alarm" "audit_drift" {
  alarm_name          = "${local.function_names["audit"]}-drift"
  alarm_description   = "${local.function_names["audit"]} found drift between totesys and the ingestion bucket: rows whose current version never landed (${local.emf_namespace}/DriftMissing) or rows deleted from totesys with no deletion recorded (DriftDeleted). Its WARN line \"audit found drift\" in ${aws_cloudwatch_log_group.stage["audit"].name} names the tables and ids; the report is under s3://${aws_s3_bucket.ingestion.bucket}/${local.audit_report_prefix}. With audit_repair (SANDSTONE_AUDIT_REPAIR=true) the audit has landed a repair batch already (repaired_batch in that line). Otherwise run `sandstone audit --repair` against the same source and bucket, or set audit_repair = true and invoke ${local.function_names["audit"]}. Rows missing again and again: raise ingest_lookback. Clears when an audit finds none."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "ignore"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "drift"
    expression  = "missing + deleted"
    label       = "Rows of drift the audit found"
    return_data = true
  }
  metric_query {
    id = "missing"
    metric {
      namespace   = local.emf_namespace
      metric_name = "DriftMissing"
      dimensions  = { Stage = "audit" }
      period      = 3600
      stat        = "Maximum"
    }
  }
  metric_query {
    id = "deleted"
    metric {
      namespace   = local.emf_namespace
      metric_name = "DriftDeleted"
      dimensions  = { Stage = "audit" }
      period      = 3600
      stat        = "Maximum"
    }
  }
}

# With audit_warehouse_check, the audit also counts warehouse rows that
# differ from the processed bucket (missing, duplicated or stale).
resource "aws_cloudwatch_metric_alarm" "audit_warehouse_drift" {
  count = var.audit_warehouse_check ? 1 : 0

  alarm_name          = "${local.function_names["audit"]}-warehouse-drift"
  alarm_description   = "${local.function_names["audit"]} found warehouse rows that differ from the processed bucket's loaded batches (${local.emf_namespace}/DriftWarehouse: missing, duplicated or stale). Its WARN line \"audit found drift\" in ${aws_cloudwatch_log_group.stage["audit"].name} names the tables; a repair does not mend the warehouse: rebuild it from the processed bucket into an empty schema. Clears when an audit finds none."
  namespace           = local.emf_namespace
  metric_name         = "DriftWarehouse"
  dimensions          = { Stage = "audit" }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "ignore"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# The audit's heartbeat: no successful audit (EMF AuditSucceeded) for two
# schedule intervals and an hour, whether it was not invoked or failed.
resource "aws_cloudwatch_metric_alarm" "audit_not_succeeding" {
  count = local.audit_scheduled ? 1 : 0

  alarm_name          = "${local.function_names["audit"]}-not-succeeding"
  alarm_description   = "${local.function_names["audit"]} has not completed an audit for ${local.audit_stale_hours} hours (${local.emf_namespace}/AuditSucceeded, schedule ${aws_scheduler_schedule.audit[0].name} on ${var.audit_schedule_expression}): the schedule is disabled or failing (check its role), or every audit fails (see the function's error alarms and ${aws_cloudwatch_log_group.stage["audit"].name}), or it runs out of time (duration alarm). Drift goes unseen meanwhile."
  namespace           = local.emf_namespace
  metric_name         = "AuditSucceeded"
  dimensions          = { Stage = "audit" }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = local.audit_stale_hours
  datapoints_to_alarm = local.audit_stale_hours
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
