# Alarms, and the e-mail they send. Every alarm's name and description say
# which function and what kind of trouble, since that is what the SNS e-mail
# shows. docs/deploy.md explains each alarm and where to look next.

# Not KMS-encrypted: CloudWatch alarms cannot publish to a topic encrypted
# with the AWS-managed key alias/aws/sns (its key policy cannot grant
# cloudwatch.amazonaws.com kms:GenerateDataKey), and the messages hold no
# data: an alarm's name, state and description.
#tfsec:ignore:aws-sns-enable-topic-encryption With alias/aws/sns CloudWatch could not publish (no alarm would reach anyone); a customer managed key would work but costs a key, a key policy and kms:CreateKey on "*" for the deploy role, to protect alarm names and states.
resource "aws_sns_topic" "alarms" {
  name = "${var.name_prefix}-alarms"
}

resource "aws_sns_topic_subscription" "email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Every failure writes exactly one JSON line with level ERROR and its
# error_kind (internal/base/logging); each function's filter counts them by kind.
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

# With a reserved slot (or an account at its concurrency limit), an event
# that arrives while a run is going is throttled and retried by Lambda:
# harmless once, a problem if it lasts.
resource "aws_cloudwatch_metric_alarm" "throttles" {
  for_each = local.stages

  alarm_name          = "${local.function_names[each.key]}-throttled"
  alarm_description   = "${local.function_names[each.key]} was throttled in each of the last 15 minutes: a run holds its reserved slot for long, events pile up, or the account is at its concurrency limit. Check its duration, reserved_concurrency and the account's Lambda concurrency."
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

# The heartbeats: the schedule starts ingest, transform and load on every
# tick (events.tf), data or not, so a stage that is not invoked for three
# ticks in a row has stopped: its schedule is disabled or failing, or the
# function is gone. The period follows schedule_expression (main.tf).
#
# Quiet until the first run: Invocations has no datapoint at all when a
# function is not invoked, and missing data counts as missing (not as
# breaching). A new alarm starts in INSUFFICIENT_DATA, which sends nothing;
# the first invocation moves it to OK; three ticks without one move it back
# to INSUFFICIENT_DATA, and that transition sends the e-mail
# (insufficient_data_actions). So neither a fresh deploy with disabled
# schedules nor the hours before the first tick alarm, and a stage that
# stops afterwards does.
resource "aws_cloudwatch_metric_alarm" "not_running" {
  for_each = local.ticked_stages

  alarm_name          = "${local.function_names[each.key]}-not-running"
  alarm_description   = "${local.function_names[each.key]} was not invoked for ${local.stale_window_minutes} minutes, three ticks of ${var.schedule_expression} (this alarm fires as INSUFFICIENT_DATA): the schedule ${local.schedule_names[each.key]} is disabled or failing (check its role ${aws_iam_role.scheduler.name}), or the function was removed."
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.stage[each.key].function_name }
  statistic           = "Sum"
  period              = local.stale_period_seconds
  evaluation_periods  = local.stale_periods
  datapoints_to_alarm = local.stale_periods
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  # The heartbeat's firing state (see above).
  insufficient_data_actions = [aws_sns_topic.alarms.arn]
}

moved {
  from = aws_cloudwatch_metric_alarm.ingest_not_running
  to   = aws_cloudwatch_metric_alarm.not_running["ingest"]
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

# Load reports, when it loaded batches, how far the warehouse was then
# behind totesys: the age of the newest loaded batch's snapshot (EMF metric
# BehindSourceSeconds, dimension Stage = load). It measures the pipeline,
# not the source: a quiet source sends nothing, and a writer whose clock
# runs hours off (last_updated in another time zone) does not make it lie,
# as FreshnessSeconds (now less the newest last_updated) would.
resource "aws_cloudwatch_metric_alarm" "freshness" {
  alarm_name          = "${local.function_names["load"]}-freshness"
  alarm_description   = "The warehouse fell more than ${var.freshness_threshold_seconds} s behind totesys (${local.function_names["load"]}, metric ${local.emf_namespace}/BehindSourceSeconds). Look for error alarms of ingest, transform or load, or a backlog (duration and throttle alarms)."
  namespace           = local.emf_namespace
  metric_name         = "BehindSourceSeconds"
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

# BehindSourceSeconds exists only when load loaded something, so the alarm
# above keeps quiet without it (nights, quiet hours). This one fires when
# the metric is missing although ingest keeps landing rows: in each of two
# periods in a row, ingest landed rows (Sandstone Rows, Stage = ingest) and
# load reported no freshness (BehindSourceSeconds, Stage = load). A change
# that lands late in one period is loaded in the next one, which then has
# its freshness: two periods in a row cannot both be missing by lateness
# alone. Without any ingest data it keeps quiet: not-running fires then.
resource "aws_cloudwatch_metric_alarm" "freshness_missing" {
  alarm_name          = "${local.function_names["load"]}-freshness-missing"
  alarm_description   = "Ingest landed totesys changes in each of the last two ${local.freshness_missing_period_seconds / 60}-minute periods, but ${local.function_names["load"]} reported no ${local.emf_namespace}/BehindSourceSeconds: changes are not reaching the warehouse. Look for error, not-running, duration and throttle alarms of ${local.function_names["transform"]} and ${local.function_names["load"]}, and their logs."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "stuck"
    expression  = "IF(FILL(landed, 0) > 0 AND FILL(loaded, 0) == 0, 1, 0)"
    label       = "Ingest landed rows, but load reported nothing loaded"
    return_data = true
  }
  metric_query {
    id = "landed"
    metric {
      namespace   = local.emf_namespace
      metric_name = "Rows"
      dimensions  = { Stage = "ingest" }
      period      = local.freshness_missing_period_seconds
      stat        = "Sum"
    }
  }
  metric_query {
    id = "loaded"
    metric {
      namespace   = local.emf_namespace
      metric_name = "BehindSourceSeconds"
      dimensions  = { Stage = "load" }
      period      = local.freshness_missing_period_seconds
      stat        = "SampleCount"
    }
  }
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
# schedule intervals and an hour, whether it was not invoked or failed. As
# the heartbeats above, it is quiet until the first successful audit and
# fires by going back to INSUFFICIENT_DATA (a failing audit also has its
# error alarms meanwhile).
resource "aws_cloudwatch_metric_alarm" "audit_not_succeeding" {
  count = local.audit_scheduled ? 1 : 0

  alarm_name          = "${local.function_names["audit"]}-not-succeeding"
  alarm_description   = "${local.function_names["audit"]} has not completed an audit for ${local.audit_stale_hours} hours (this alarm fires as INSUFFICIENT_DATA) (${local.emf_namespace}/AuditSucceeded, schedule ${aws_scheduler_schedule.audit[0].name} on ${var.audit_schedule_expression}): the schedule is disabled or failing (check its role), or every audit fails (see the function's error alarms and ${aws_cloudwatch_log_group.stage["audit"].name}), or it runs out of time (duration alarm). Drift goes unseen meanwhile."
  namespace           = local.emf_namespace
  metric_name         = "AuditSucceeded"
  dimensions          = { Stage = "audit" }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = local.audit_stale_hours
  datapoints_to_alarm = local.audit_stale_hours
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  # The heartbeat's firing state (see above).
  insufficient_data_actions = [aws_sns_topic.alarms.arn]
}

# With capture = "wal", ingest reports after each run how much WAL its
# replication slot holds back on totesys's disk (EMF SlotRetainedBytes,
# dimension Stage = ingest). It grows while ingest does not run or cannot
# keep up, and a slot nobody reads fills the disk, or, under
# max_slot_wal_keep_size, is invalidated: a capture gap. While ingest does
# not run at all, its not-running alarm speaks.
resource "aws_cloudwatch_metric_alarm" "slot_lag" {
  count = var.capture == "wal" ? 1 : 0

  alarm_name          = "${local.function_names["ingest"]}-slot-lag"
  alarm_description   = "The replication slot of ${local.function_names["ingest"]} holds back more than ${var.slot_lag_alarm_bytes} bytes of WAL on totesys's disk (${local.emf_namespace}/SlotRetainedBytes; its EMF line names the slot and wal_status). Ingest is failing or slow: see its error, duration and not-running alarms. Past max_slot_wal_keep_size RDS invalidates the slot (a capture gap: sandstone ingest --capture wal --resnapshot, then sandstone audit --repair); without it the disk fills. If wal capture is given up, run sandstone drop-slot (docs/deploy.md)."
  namespace           = local.emf_namespace
  metric_name         = "SlotRetainedBytes"
  dimensions          = { Stage = "ingest" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.slot_lag_alarm_bytes
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
