output "rules" {
  description = <<-EOT
    The rendered ingress rules, one per (rule, contiguous run of listener ports): key
    (stable, for for_each), group (the security group the rule belongs to), rule (its
    number in the file, from 1), from_port/to_port (TCP), listeners (names, upper
    case, whose ports the range covers), cidr_ipv4 or cidr_ipv6, or source_group with
    that group's normalised members, description (as written) and aws_description
    (reduced to the characters AWS accepts).
  EOT
  value       = local.rules

  # The broker refuses these files at start-up (src/network/security_groups.rs);
  # refusing them at plan time keeps a bad file from reaching the instances.
  precondition {
    condition     = length(local.unknown_top_level) == 0 && length(local.unknown_group_fields) == 0 && length(local.unknown_rule_fields) == 0
    error_message = "${var.security_groups_file}: unknown fields ${jsonencode(concat(tolist(local.unknown_top_level), local.unknown_group_fields, local.unknown_rule_fields))} (the broker refuses unknown fields)."
  }
  precondition {
    condition     = length(local.unknown_listeners) == 0
    error_message = "${var.security_groups_file} attaches groups to ${jsonencode(local.unknown_listeners)}, which are not listeners of the broker (${jsonencode(keys(local.listener_ports))}); the broker would refuse the file."
  }
  precondition {
    condition     = length(local.attachments) == length(try(local.document.listeners, {}))
    error_message = "${var.security_groups_file} names one listener twice (names are case-insensitive)."
  }
  precondition {
    condition     = length(local.unknown_attached_groups) == 0
    error_message = "${var.security_groups_file}: listeners attach groups that are not in security_groups: ${jsonencode(local.unknown_attached_groups)}."
  }
  precondition {
    condition     = length(local.bad_addresses) == 0
    error_message = "${var.security_groups_file}: ${jsonencode(local.bad_addresses)} are not CIDRs (10.0.0.0/16, ::/0) or addresses."
  }
  precondition {
    condition     = length(local.bad_sources) == 0
    error_message = "${var.security_groups_file}: ${jsonencode(local.bad_sources)} must name exactly one of \"cidr\" and \"source_group\"."
  }
  precondition {
    condition     = length(local.unknown_source_groups) == 0
    error_message = "${var.security_groups_file}: source_group names a group that is not in the file: ${jsonencode(local.unknown_source_groups)}."
  }
  precondition {
    condition     = length(local.bad_ports) == 0
    error_message = "${var.security_groups_file}: bad \"ports\" (\"all\", a port or \"lo-hi\" within 0-65535): ${jsonencode(local.bad_ports)}."
  }
}

output "groups" {
  description = "Every group of the file: description, aws_description, members (normalised CIDRs), listeners it is attached to (upper case) and their ports."
  value       = local.groups_out
}

output "attached_groups" {
  description = "The groups attached to at least one listener: the security groups the broker instances carry."
  value       = sort([for g, v in local.groups_out : g if length(v.listeners) > 0])
}

output "listener_groups" {
  description = "Listener name (upper case) => attached group names."
  value       = local.attachments
}
