# The four functions (three stages and the audit), what each is told
# through its environment, and the key prefixes each may write. The bucket
# contracts are in docs/design.md; the key layout is internal/contract/lake (manifests/NNNNNN/NNNNNNNNNNNN.json written last
# per batch, data under TABLE/YYYY/MM/DD/...).

locals {
  account_id = data.aws_caller_identity.current.account_id

  ingestion_bucket_url = "s3://${aws_s3_bucket.ingestion.bucket}?region=${var.aws_region}"
  processed_bucket_url = "s3://${aws_s3_bucket.processed.bucket}?region=${var.aws_region}"

  # One function per stage, all from the same bootstrap; SANDSTONE_STAGE
  # picks the stage. Each gets only the settings its stage reads.
  stages = {
    ingest = {
      description = "Sandstone ingest: copies new totesys row versions into the ingestion bucket (EventBridge Scheduler)."
      environment = merge({
        SANDSTONE_STAGE             = "ingest"
        SANDSTONE_INGEST_BUCKET     = local.ingestion_bucket_url
        SANDSTONE_SOURCE_SECRET_ARN = aws_secretsmanager_secret.source.arn
        SANDSTONE_LOOKBACK          = var.ingest_lookback
      }, local.capture_environment)
    }
    transform = {
      description = "Sandstone transform: turns ingested batches into star-schema Parquet in the processed bucket (S3 manifest events)."
      environment = {
        SANDSTONE_STAGE            = "transform"
        SANDSTONE_INGEST_BUCKET    = local.ingestion_bucket_url
        SANDSTONE_PROCESSED_BUCKET = local.processed_bucket_url
      }
    }
    load = {
      description = "Sandstone load: loads processed batches into the warehouse (S3 manifest events)."
      environment = {
        SANDSTONE_STAGE                = "load"
        SANDSTONE_PROCESSED_BUCKET     = local.processed_bucket_url
        SANDSTONE_WAREHOUSE_SECRET_ARN = aws_secretsmanager_secret.warehouse.arn
        SANDSTONE_WAREHOUSE_SCHEMA     = var.warehouse_schema
      }
    }
    # sandstone audit, on its own schedule: compares totesys with the
    # ingestion bucket and reports drift (DriftMissing, DriftDeleted). It
    # must judge what is pending with ingest's lookback.
    audit = {
      description = "Sandstone audit: compares totesys with the ingestion bucket and reports missing and deleted rows (EventBridge Scheduler)."
      environment = merge({
        SANDSTONE_STAGE             = "audit"
        SANDSTONE_INGEST_BUCKET     = local.ingestion_bucket_url
        SANDSTONE_SOURCE_SECRET_ARN = aws_secretsmanager_secret.source.arn
        SANDSTONE_LOOKBACK          = var.ingest_lookback
        SANDSTONE_AUDIT_REPAIR      = var.audit_repair ? "true" : "false"
        }, var.audit_warehouse_check ? {
        SANDSTONE_PROCESSED_BUCKET     = local.processed_bucket_url
        SANDSTONE_WAREHOUSE_SECRET_ARN = aws_secretsmanager_secret.warehouse.arn
        SANDSTONE_WAREHOUSE_SCHEMA     = var.warehouse_schema
      } : {})
    }
  }

  # How ingest reads totesys (capture), and in wal capture its slot and
  # publication; the function's own defaults stand for what is not set.
  capture_environment = merge(
    { SANDSTONE_CAPTURE = var.capture },
    var.capture == "wal" ? { SANDSTONE_PUBLICATION = var.publication } : {},
    var.capture == "wal" && var.replication_slot != "" ? { SANDSTONE_SLOT = var.replication_slot } : {},
  )

  # Memory and timeout per function; audit's may be left out of the
  # variables (which predate it).
  lambda_memory_mb       = merge({ audit = 1024 }, var.lambda_memory_mb)
  lambda_timeout_seconds = merge({ audit = 900 }, var.lambda_timeout_seconds)

  # The audit's schedule: "" runs it only when invoked by hand. Its
  # staleness alarm allows two intervals and an hour without a successful
  # audit (a cron expression counts as daily), at most CloudWatch's 7 days.
  audit_scheduled        = var.audit_schedule_expression != ""
  audit_rate             = regexall("^rate\\(([0-9]+) (minute|hour|day)s?\\)$", var.audit_schedule_expression)
  audit_interval_seconds = length(local.audit_rate) > 0 ? tonumber(local.audit_rate[0][0]) * { minute = 60, hour = 3600, day = 86400 }[local.audit_rate[0][1]] : 86400
  audit_stale_hours      = min(168, max(2, ceil((2 * local.audit_interval_seconds + 3600) / 3600)))

  function_names = { for s in keys(local.stages) : s => "${var.name_prefix}-${s}" }

  # The pipeline's schedule (schedule_expression) starts ingest, and sweeps
  # transform and load, on every tick (events.tf): each stage's heartbeat
  # alarm (not-running) fires after three ticks without an invocation. The
  # interval is read from a rate(), or given for a cron() by
  # schedule_interval_minutes. CloudWatch takes periods of up to an hour
  # here, so a longer interval is watched in hours.
  ticked_stages             = toset(["ingest", "transform", "load"])
  schedule_names            = { for s in local.ticked_stages : s => "${var.name_prefix}-${s}" }
  schedule_rate             = regexall("^rate\\(([0-9]+) (minute|hour)s?\\)$", var.schedule_expression)
  schedule_interval_seconds = length(local.schedule_rate) > 0 ? tonumber(local.schedule_rate[0][0]) * { minute = 60, hour = 3600 }[local.schedule_rate[0][1]] : (var.schedule_interval_minutes == null ? 0 : var.schedule_interval_minutes) * 60
  stale_period_seconds      = min(3600, local.schedule_interval_seconds)
  stale_periods             = ceil(3 * local.schedule_interval_seconds / local.stale_period_seconds)
  stale_window_minutes      = local.stale_period_seconds * local.stale_periods / 60

  # The freshness-missing alarm looks at two periods of half the freshness
  # threshold each (whole minutes, at least one).
  freshness_missing_period_seconds = max(60, floor(var.freshness_threshold_seconds / 120) * 60)

  # The bootstrap zip, found from this directory whatever the working
  # directory of terraform (path.module), unless lambda_zip names one.
  lambda_zip = var.lambda_zip != null ? var.lambda_zip : "${path.module}/../../bin/lambda/bootstrap.zip"

  # Every role lives under /NAME_PREFIX/ and carries the permissions
  # boundary the bootstrap made: the deploy role may create no other.
  # Without the bootstrap (permissions_boundary = false), roles carry none.
  role_path                = "/${var.name_prefix}/"
  permissions_boundary_arn = var.permissions_boundary ? "arn:aws:iam::${local.account_id}:policy/${var.name_prefix}-pipeline-boundary" : null

  # Reserved concurrency by stage; null is unreserved (reserved_concurrency).
  reserved_concurrency = { for s in keys(local.stages) : s => try(var.reserved_concurrency[s], null) }

  # VPC placement: with vpc_subnet_ids, the functions that reach a database
  # run in those subnets (to reach private RDS); transform, which reaches
  # only S3, stays outside.
  vpc_stages = length(var.vpc_subnet_ids) > 0 ? ["ingest", "load", "audit"] : []

  # The schedules run only once the secrets hold their values (secrets_set).
  schedule_state = var.secrets_set ? "ENABLED" : "DISABLED"

  # What Lambda does with a VPC function's role: its network interfaces.
  eni_actions = [
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
  ]

  # Manifests: the notifications fire on these keys only.
  manifest_prefix = "manifests/"
  manifest_suffix = ".json"

  # The totesys tables (internal/contract/totesys.Tables): ingest writes one object
  # per table and batch under TABLE/.
  totesys_tables = ["address", "counterparty", "currency", "department", "design", "staff", "payment_type", "sales_order", "purchase_order", "transaction", "payment"]

  # Prefixes each writer may create objects under. Nothing may overwrite or
  # delete: the buckets are immutable, so no role has s3:DeleteObject.
  ingest_write_prefixes    = concat([local.manifest_prefix, "state/"], [for t in local.totesys_tables : "${t}/"])
  transform_write_prefixes = concat([local.manifest_prefix, "state/", "rejects/"], [for t in keys(local.star_tables) : "${t}/"])
  # The audit writes its reports under audits/ (internal/ops/audit.ReportPrefix)
  # and, with audit_repair, a repair batch where ingest writes.
  audit_report_prefix = "audits/"

  # Every error kind of internal/base/errkind, with what it means for whoever
  # reads the alarm e-mail. One alarm per function and kind.
  error_kinds = {
    source_unreachable         = "the totesys database could not be reached (down, network, or no answer within the connect timeout); the next run tries again"
    source_auth_failed         = "the totesys database refused the login in the source secret (wrong user or password, or no pg_hba.conf entry): fix the secret (every run fails the same way until then)"
    source_database_missing    = "the totesys server has no database of the name in the source secret: fix the secret or create the database (every run fails the same way until then)"
    source_schema_mismatch     = "a totesys table lacks a column the pipeline needs or has an unexpected type"
    bucket_read_failed         = "an object or manifest could not be read from a bucket (permissions, missing object, corrupt Parquet)"
    bucket_write_failed        = "an object or manifest could not be written to a bucket (permissions, S3 errors)"
    bad_rows_rejected          = "some source rows could not be turned into star rows and were set aside in the batch's rejects"
    warehouse_unreachable      = "the warehouse database could not be reached (down, network, or no answer within the connect timeout); the next run tries again"
    warehouse_auth_failed      = "the warehouse database refused the login in the warehouse secret (wrong user or password, or no pg_hba.conf entry): fix the secret (every run fails the same way until then)"
    warehouse_database_missing = "the warehouse server has no database of the name in the warehouse secret: fix the secret or create the database (every run fails the same way until then)"
    warehouse_schema_mismatch  = "a warehouse table differs from the star schema the pipeline expects"
    load_failed                = "a batch could not be written to the warehouse (constraint or COPY failure); it will be retried"
    object_mismatch            = "an object in a bucket differs from its batch's manifest (size, SHA-256 or row count): it was replaced or corrupted, so the batch is refused until the original object is restored or the bucket is rebuilt"
    ledger_mismatch            = "a bucket does not hold the batches the next stage already took from it (wiped, rebuilt or another bucket): point the stage at the right bucket, or rebuild the warehouse from these buckets into an empty schema"
    config_invalid             = "the function's environment or secret is missing or malformed"
    capture_not_ready          = "the totesys database is not ready for log-based capture (SANDSTONE_CAPTURE=wal): wal_level, the REPLICATION grant (rds_replication on RDS), the publication, the replication slot or a table's replica identity; the log line names what is missing and the statement or parameter to set (every run fails the same way until then)"
    capture_gap                = "the replication slot of log-based capture is gone, invalidated, on another server, or confirmed past what the ingestion bucket holds: changes may be missing; resnapshot, or run sandstone audit --repair (every run fails the same way until then)"
    capture_slot_busy          = "another consumer holds the replication slot of log-based capture (another pipeline on the same slot, or a killed run whose WAL sender keeps it until wal_sender_timeout passes): the next run tries again; if it lasts, find the process in pg_replication_slots.active_pid"
    internal                   = "an unexpected failure (a bug): read the log line's msg"
  }

  error_alarms = {
    for pair in setproduct(keys(local.stages), keys(local.error_kinds)) : "${pair[0]}-${pair[1]}" => {
      stage = pair[0]
      kind  = pair[1]
    }
  }

  # Metrics: error log lines per function (metric filters, below), and the
  # stages' own Embedded Metric Format lines (Rows, Seconds, Failures,
  # BehindSourceSeconds) in namespace Sandstone with dimension Stage.
  error_metric_namespace = "Sandstone/ErrorLogs"
  emf_namespace          = "Sandstone"

  # The star schema as Glue sees the processed bucket's Parquet (the Go row
  # types of internal/contract/star). Times of day are Parquet TIME(MILLIS), declared
  # int: milliseconds since midnight UTC. Money is decimal(10,2). The fact
  # tables' serial ids are assigned by the warehouse, so they are not here.
  # A test (checkGlue) holds every column, type and comment to star's types.
  time_columns = ["created_time", "last_updated_time", "last_updated"]

  star_tables = {
    dim_date = [
      ["date_id", "date"], ["year", "int"], ["month", "int"], ["day", "int"], ["day_of_week", "int"],
      ["day_name", "string"], ["month_name", "string"], ["quarter", "int"],
    ]
    dim_staff = [
      ["staff_id", "int"], ["first_name", "string"], ["last_name", "string"], ["department_name", "string"],
      ["location", "string"], ["email_address", "string"],
    ]
    dim_location = [
      ["location_id", "int"], ["address_line_1", "string"], ["address_line_2", "string"], ["district", "string"],
      ["city", "string"], ["postal_code", "string"], ["country", "string"], ["phone", "string"],
    ]
    dim_currency = [
      ["currency_id", "int"], ["currency_code", "string"], ["currency_name", "string"],
    ]
    dim_design = [
      ["design_id", "int"], ["design_name", "string"], ["file_location", "string"], ["file_name", "string"],
    ]
    dim_counterparty = [
      ["counterparty_id", "int"], ["counterparty_legal_name", "string"], ["counterparty_legal_address_line_1", "string"],
      ["counterparty_legal_address_line_2", "string"], ["counterparty_legal_district", "string"],
      ["counterparty_legal_city", "string"], ["counterparty_legal_postal_code", "string"],
      ["counterparty_legal_country", "string"], ["counterparty_legal_phone_number", "string"],
    ]
    dim_payment_type = [
      ["payment_type_id", "int"], ["payment_type_name", "string"],
    ]
    dim_transaction = [
      ["transaction_id", "int"], ["transaction_type", "string"], ["sales_order_id", "int"], ["purchase_order_id", "int"],
    ]
    fact_sales_order = [
      ["sales_order_id", "int"], ["created_date", "date"], ["created_time", "int"], ["last_updated_date", "date"],
      ["last_updated_time", "int"], ["sales_staff_id", "int"], ["counterparty_id", "int"], ["units_sold", "int"],
      ["unit_price", "decimal(10,2)"], ["currency_id", "int"], ["design_id", "int"], ["agreed_payment_date", "date"],
      ["agreed_delivery_date", "date"], ["agreed_delivery_location_id", "int"],
    ]
    fact_purchase_order = [
      ["purchase_order_id", "int"], ["created_date", "date"], ["created_time", "int"], ["last_updated_date", "date"],
      ["last_updated_time", "int"], ["staff_id", "int"], ["counterparty_id", "int"], ["item_code", "string"],
      ["item_quantity", "int"], ["item_unit_price", "decimal(10,2)"], ["currency_id", "int"],
      ["agreed_delivery_date", "date"], ["agreed_payment_date", "date"], ["agreed_delivery_location_id", "int"],
    ]
    fact_payment = [
      ["payment_id", "int"], ["created_date", "date"], ["created_time", "int"], ["last_updated_date", "date"],
      ["last_updated", "int"], ["transaction_id", "int"], ["counterparty_id", "int"], ["payment_amount", "decimal(10,2)"],
      ["currency_id", "int"], ["payment_type_id", "int"], ["paid", "boolean"], ["payment_date", "date"],
    ]
  }
}
