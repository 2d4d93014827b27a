terraform {
  # 1.9: variable validations may refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: aws_vpc_security_group_ingress_rule, availability_zone_id on subnets,
      # user_data_base64 updates; 6.x renames the instance's network_interface block.
      version = "~> 5.70"
    }
  }
}
