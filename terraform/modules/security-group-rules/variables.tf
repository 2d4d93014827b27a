variable "security_groups_file" {
  description = <<-EOT
    Path of the broker's security-groups JSON file (the file the brokers enforce as
    `security.groups.file`). Its format: {"security_groups": {NAME: {"description"?,
    "members"?: [CIDR or address...], "ingress": [{"cidr" | "source_group", "ports":
    "all" | 9092 | "9092" | "9092-9098", "description"?}]}}, "listeners": {LISTENER:
    [NAME...]}}.
  EOT
  type        = string

  validation {
    condition     = can(jsondecode(file(var.security_groups_file)))
    error_message = "The security_groups_file must exist and hold JSON."
  }
}

variable "listeners" {
  description = <<-EOT
    The broker's listeners, name => port, as in its `listeners` config
    (PLAINTEXT://0.0.0.0:9092 is PLAINTEXT = 9092). Names compare case-insensitively,
    as the broker compares them. A rule's port range is intersected with the ports of
    the listeners its group is attached to.
  EOT
  type        = map(number)

  validation {
    condition     = alltrue([for p in values(var.listeners) : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Every listener port must be an integer from 1 to 65535."
  }

  validation {
    condition     = length(distinct(values(var.listeners))) == length(var.listeners)
    error_message = "Two listeners cannot share a port."
  }

  validation {
    condition     = length(distinct([for l in keys(var.listeners) : upper(l)])) == length(var.listeners)
    error_message = "Listener names must differ by more than letter case (the broker upper-cases them)."
  }
}

variable "expand_source_groups" {
  description = <<-EOT
    How a `source_group` rule is rendered. false: one rule whose source is the named
    group (AWS: referenced_security_group_id, i.e. "network interfaces carrying that
    security group"). true: one CIDR rule per member of the named group, which is
    exactly the broker's reading ("addresses inside the group's members").
  EOT
  type        = bool
  default     = false
}
