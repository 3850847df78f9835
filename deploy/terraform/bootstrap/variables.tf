variable "aws_region" {
  description = "AWS region of the state bucket and of the Sandstone deployment (the same region as the main configuration)."
  type        = string
  default     = "eu-west-2"
}

variable "name_prefix" {
  description = "The main configuration's name_prefix: the deploy role may manage only resources named with it."
  type        = string
  default     = "sandstone"
}

variable "github_repository" {
  description = "GitHub repository allowed to assume the roles, as OWNER/NAME."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like OWNER/NAME."
  }
}

variable "github_environment" {
  description = "Protected GitHub environment whose jobs may assume the deploy role (deploy.yml uses production)."
  type        = string
  default     = "production"
}

variable "create_github_oidc_provider" {
  description = "Create the account's OIDC provider for token.actions.githubusercontent.com; false if the account already has one."
  type        = bool
  default     = true
}

variable "state_key_prefix" {
  description = "Key prefix of the main configuration's state (and lock) objects in the state bucket."
  type        = string
  default     = "sandstone/"
}

variable "glue_database_name" {
  description = "The main configuration's glue_database_name: the deploy role may manage only that Glue database."
  type        = string
  default     = "sandstone_star"
}
