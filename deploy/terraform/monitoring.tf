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
  alarm_description   = "${local.function_names[each.key]} ran longer than ${floor(var.duration_alarm_ratio * 100)}% of its ${var.lambda_timeout_seconds[each.key]} s timeout. Raise lambda_timeout_seconds or lambda_memory_mb for ${each.key}, or look for a slow database."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.stage[each.key].function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.lambda_timeout_seconds[each.key] * 1000 * var.duration_alarm_ratio
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
