variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-west-2 (London)."
  type        = string
  default     = "eu-west-2"
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, roles, buckets, alarms, secrets). Lower-case letters, digits and hyphens."
  type        = string
  default     = "sandstone"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix must be 2-21 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource, merged over Project = sandstone and ManagedBy = terraform."
  type        = map(string)
  default     = {}
}

variable "lambda_zip" {
  description = "Path of the zip holding the arm64 bootstrap binary. null (the default) takes bin/lambda/bootstrap.zip of this repository, built by `make lambda`, found from this directory (path.module) whatever the working directory."
  type        = string
  default     = null
}

variable "lambda_memory_mb" {
  description = "Memory of each function in MB, by stage (ingest, transform, load; audit optional, 1024 when left out). CPU grows with memory."
  type        = map(number)
  default = {
    ingest    = 512
    transform = 1024
    load      = 512
    audit     = 1024
  }

  validation {
    condition     = alltrue([for s in ["ingest", "transform", "load"] : contains(keys(var.lambda_memory_mb), s)]) && alltrue([for m in values(var.lambda_memory_mb) : m >= 128 && m <= 10240])
    error_message = "lambda_memory_mb needs ingest, transform and load, each 128-10240 MB."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of each function in seconds, by stage (ingest, transform, load; audit optional, 900 when left out). A run stops at a batch boundary before it and leaves the rest to the next invocation; an audit that cannot finish in time fails."
  type        = map(number)
  default = {
    ingest    = 300
    transform = 600
    load      = 600
    audit     = 900
  }

  validation {
    condition     = alltrue([for s in ["ingest", "transform", "load"] : contains(keys(var.lambda_timeout_seconds), s)]) && alltrue([for t in values(var.lambda_timeout_seconds) : t >= 10 && t <= 900])
    error_message = "lambda_timeout_seconds needs ingest, transform and load, each 10-900 seconds."
  }
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression that starts ingest, and sweeps transform and load, e.g. rate(10 minutes) (1-1440 minutes or 1-24 hours) or cron(0/5 * * * ? *) (UTC) with schedule_interval_minutes. Each stage's not-running alarm fires after three intervals without an invocation."
  type        = string
  default     = "rate(10 minutes)"

  validation {
    condition     = can(regex("^rate\\(([1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440) minutes?\\)$|^rate\\(([1-9]|1[0-9]|2[0-4]) hours?\\)$", var.schedule_expression)) || (can(regex("^cron\\(\\S+( \\S+){5}\\)$", var.schedule_expression)) && var.schedule_interval_minutes != null)
    error_message = "schedule_expression must be rate(N minutes) with N 1-1440, rate(N hours) with N 1-24, or cron(six fields) with schedule_interval_minutes set."
  }
}

variable "schedule_interval_minutes" {
  description = "For a cron() schedule_expression only: the longest gap between two of its ticks, in minutes (1-1440), from which the not-running alarms take their period. A rate() gives its own interval; leave null."
  type        = number
  default     = null

  validation {
    condition     = var.schedule_interval_minutes == null || (var.schedule_interval_minutes >= 1 && var.schedule_interval_minutes <= 1440)
    error_message = "schedule_interval_minutes must be null or 1-1440."
  }
}

variable "audit_schedule_expression" {
  description = "EventBridge Scheduler expression that starts the audit function (sandstone audit), e.g. rate(1 day) or cron(0 3 * * ? *) (UTC). \"\" creates no schedule and no staleness alarm: the function then runs only when invoked by hand. The staleness alarm allows two intervals of a rate() and an hour (a cron() counts as daily)."
  type        = string
  default     = "rate(1 day)"

  validation {
    condition     = var.audit_schedule_expression == "" || can(regex("^(rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\(\\S+( \\S+){5}\\))$", var.audit_schedule_expression))
    error_message = "audit_schedule_expression must be rate(N unit) with unit minute(s), hour(s) or day(s), cron(six fields), or \"\" for no schedule."
  }
}

variable "audit_repair" {
  description = "Let the scheduled audit repair what it finds (SANDSTONE_AUDIT_REPAIR, as sandstone audit --repair): land the missing rows and record the deletions as one ingestion batch, which transform and load then take. Also lets its role create objects where ingest does. Default false: the audit only reports, and the drift alarm asks a person to repair."
  type        = bool
  default     = false
}

variable "audit_warehouse_check" {
  description = "Give the audit function the processed bucket and the warehouse secret (read only), so that the audit also checks the warehouse against the processed bucket."
  type        = bool
  default     = false
}

variable "ingest_lookback" {
  description = "How long after its last_updated a totesys row may still commit and be caught by ingest (SANDSTONE_LOOKBACK, a Go duration). The audit judges what is still pending with the same value."
  type        = string
  default     = "10m"
}

variable "warehouse_schema" {
  description = "PostgreSQL schema of the warehouse tables that load writes (SANDSTONE_WAREHOUSE_SCHEMA)."
  type        = string
  default     = "public"
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps each function's log lines."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "alarm_email" {
  description = "E-mail address that receives the alarms through SNS. AWS sends it a confirmation link that must be clicked once."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address."
  }
}

variable "freshness_threshold_seconds" {
  description = "Alarm when the warehouse is further than this behind totesys (BehindSourceSeconds, emitted by load: the age of the newest loaded batch's snapshot). 1800 s is the totesys specification's 30 minutes. The freshness-missing alarm looks at two periods of half of it."
  type        = number
  default     = 1800

  validation {
    condition     = var.freshness_threshold_seconds >= 120 && var.freshness_threshold_seconds <= 86400
    error_message = "freshness_threshold_seconds must be 120-86400."
  }
}

variable "duration_alarm_ratio" {
  description = "Alarm when a function's longest run in 5 minutes exceeds this fraction of its timeout."
  type        = number
  default     = 0.8

  validation {
    condition     = var.duration_alarm_ratio > 0 && var.duration_alarm_ratio < 1
    error_message = "duration_alarm_ratio must be between 0 and 1."
  }
}

variable "async_retry_attempts" {
  description = "How many times Lambda retries a failed asynchronous invocation (0-2) before sending it to the dead-letter queue. Default 0: events are only hints and the next scheduled sweep catches up, so a retry would only turn one failed tick into three runs."
  type        = number
  default     = 0

  validation {
    condition     = contains([0, 1, 2], var.async_retry_attempts)
    error_message = "async_retry_attempts must be 0, 1 or 2 (what Lambda accepts)."
  }
}

variable "async_max_event_age_seconds" {
  description = "How long Lambda keeps an unprocessed asynchronous event (60-21600 s) before sending it to the dead-letter queue. Events are only hints, so an hour is plenty."
  type        = number
  default     = 3600

  validation {
    condition     = var.async_max_event_age_seconds >= 60 && var.async_max_event_age_seconds <= 21600 && floor(var.async_max_event_age_seconds) == var.async_max_event_age_seconds
    error_message = "async_max_event_age_seconds must be a whole number of seconds, 60-21600 (what Lambda accepts)."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 deletes at once, else 7-30). With 0, `terraform destroy` followed by a new apply can reuse the secret names at once."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30 && floor(var.secret_recovery_window_days) == var.secret_recovery_window_days)
    error_message = "secret_recovery_window_days must be 0 or a whole number of days 7-30 (what Secrets Manager accepts)."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the buckets with every object version in them, and lift the buckets' policy rule that refuses deletes. Leave false in production; set true (and apply) only to tear down."
  type        = bool
  default     = false
}

variable "glue_database_name" {
  description = "Name of the Glue Data Catalog database holding one table per star-schema table (lower-case letters, digits, underscores)."
  type        = string
  default     = "sandstone_star"
}

variable "secrets_set" {
  description = "Whether both secrets (source-db and warehouse-db) hold their values. false (the first apply) creates every schedule DISABLED, so that no run fails on an empty secret; set true and apply again once they are set (docs/deploy.md)."
  type        = bool
  default     = false
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions by stage (ingest, transform, load, audit); a stage left out (or null) is unreserved and draws on the account's pool. Ingest keeps 1: one capture at a time, alone on its slot. Each reservation counts against the account's concurrency quota, of which Lambda keeps 10 unreserved (a new account often has only 10 in all: then reserve nothing, {})."
  type        = map(number)
  default = {
    ingest = 1
  }

  validation {
    condition     = alltrue([for k, v in var.reserved_concurrency : contains(["ingest", "transform", "load", "audit"], k) && (v == null ? true : v >= 0 && floor(v) == v)])
    error_message = "reserved_concurrency takes the stages ingest, transform, load and audit, each null or a whole number >= 0."
  }
}

variable "permissions_boundary" {
  description = "Attach the permissions boundary the bootstrap (deploy/terraform/bootstrap) creates, NAME_PREFIX-pipeline-boundary, to every role. The deploy role may create no role without it. false only to try the configuration without the bootstrap, with credentials of your own."
  type        = bool
  default     = true
}

variable "vpc_subnet_ids" {
  description = "Private subnets to place the functions that reach a database (ingest, load, audit) in, to reach private RDS instances; [] (the default) runs them outside any VPC, and the databases must then be reachable from the internet. Two or more, in different Availability Zones. transform reaches no database and stays outside."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  description = "Security groups of the functions in the VPC (with vpc_subnet_ids): they must allow outbound 5432 to the databases and 443 to S3 and Secrets Manager (endpoints or a NAT gateway). Required with vpc_subnet_ids."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.vpc_security_group_ids) > 0 == length(var.vpc_subnet_ids) > 0
    error_message = "vpc_subnet_ids and vpc_security_group_ids go together: set both, or neither."
  }
}

variable "vpc_id" {
  description = "The VPC of vpc_subnet_ids; needed only for the endpoints below (create_s3_endpoint, create_secretsmanager_endpoint)."
  type        = string
  default     = ""
}

variable "create_s3_endpoint" {
  description = "Create an S3 gateway endpoint in vpc_id on s3_endpoint_route_table_ids, so that the functions in the VPC reach the buckets without a NAT gateway (free of charge). false when the VPC has one already or routes through a NAT."
  type        = bool
  default     = false

  validation {
    condition     = !var.create_s3_endpoint || (var.vpc_id != "" && length(var.s3_endpoint_route_table_ids) > 0)
    error_message = "create_s3_endpoint needs vpc_id and s3_endpoint_route_table_ids."
  }
}

variable "s3_endpoint_route_table_ids" {
  description = "Route tables of vpc_subnet_ids that the S3 gateway endpoint joins (create_s3_endpoint)."
  type        = list(string)
  default     = []
}

variable "create_secretsmanager_endpoint" {
  description = "Create a Secrets Manager interface endpoint (private DNS) in vpc_subnet_ids, so that the functions read their secret without a NAT gateway (billed per hour and Availability Zone). false when the VPC has one already or routes through a NAT."
  type        = bool
  default     = false

  validation {
    condition     = !var.create_secretsmanager_endpoint || (var.vpc_id != "" && length(var.vpc_subnet_ids) > 0)
    error_message = "create_secretsmanager_endpoint needs vpc_id and vpc_subnet_ids."
  }
}

variable "endpoint_security_group_ids" {
  description = "Security groups of the Secrets Manager interface endpoint: they must allow inbound 443 from vpc_security_group_ids. [] uses vpc_security_group_ids (which must then allow 443 from themselves)."
  type        = list(string)
  default     = []
}

variable "capture" {
  description = "How the ingest function reads totesys: \"poll\" (rows whose last_updated is new; a read-only login suffices) or \"wal\" (every committed change, from the write-ahead log through a logical replication slot: RDS needs rds.logical_replication = 1 and the rds_replication grant, docs/deploy.md). wal keeps ingest's reserved concurrency at 1: the slot takes one consumer at a time."
  type        = string
  default     = "poll"

  validation {
    condition     = contains(["poll", "wal"], var.capture)
    error_message = "capture is \"poll\" or \"wal\"."
  }
  validation {
    condition     = var.capture != "wal" || try(var.reserved_concurrency["ingest"], null) == 1
    error_message = "capture = \"wal\" needs reserved_concurrency.ingest = 1: a replication slot takes one consumer at a time, and a second run would only wait for the first."
  }
}

variable "replication_slot" {
  description = "Replication slot of capture = \"wal\" (SANDSTONE_SLOT); \"\" is sandstone_ and the source database's name. 1 to 63 lowercase letters, digits and underscores."
  type        = string
  default     = ""

  validation {
    condition     = var.replication_slot == "" || can(regex("^[a-z0-9_]{1,63}$", var.replication_slot))
    error_message = "replication_slot is \"\" or 1 to 63 lowercase letters, digits and underscores."
  }
}

variable "publication" {
  description = "Publication of capture = \"wal\" (SANDSTONE_PUBLICATION): created by ingest when its role may, else by a DBA with the statement the preflight error gives."
  type        = string
  default     = "sandstone"

  validation {
    condition     = can(regex("^.{1,63}$", var.publication))
    error_message = "publication is 1 to 63 characters."
  }
}

variable "slot_lag_alarm_bytes" {
  description = "With capture = \"wal\": alarm when the replication slot holds back more than this much WAL on the source's disk (Sandstone/SlotRetainedBytes, Stage = ingest). Keep it well under the RDS parameter max_slot_wal_keep_size and the free storage."
  type        = number
  default     = 1073741824

  validation {
    condition     = var.slot_lag_alarm_bytes >= 16777216
    error_message = "slot_lag_alarm_bytes is at least 16777216 (16 MiB, one WAL segment): less alarms on every run."
  }
}
