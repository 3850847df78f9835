# Sandstone on AWS: four Lambda functions from one bootstrap (ingest,
# transform, load, audit), two buckets, EventBridge schedules, S3
# notifications, CloudWatch alarms to SNS e-mail, a dead-letter queue,
# Secrets Manager secrets and a Glue catalogue.
# docs/deploy.md explains how to deploy, read the alarms and tear it down.

terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # Remote state, configured at `terraform init` time so that no account
  # details live in the repository (a partial backend configuration):
  #
  #   terraform init \
  #     -backend-config="bucket=<state bucket>" \
  #     -backend-config="key=sandstone/terraform.tfstate" \
  #     -backend-config="region=<region>" \
  #     -backend-config="use_lockfile=true"
  #
  # deploy/terraform/bootstrap creates the state bucket, and the deploy
  # workflow passes these settings from repository variables. To try the
  # configuration with local state instead, comment this block out.
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = "sandstone", ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
