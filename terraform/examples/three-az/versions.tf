terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }

  # Keep the state somewhere shared and locked for anything but a trial, e.g.:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "strata/three-az.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "strata"
      ManagedBy = "terraform"
    }
  }
}
