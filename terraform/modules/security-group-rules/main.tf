# Renders the broker's security-groups JSON (src/network/security_groups.rs) into a
# flat list of AWS ingress rules, with the broker's semantics:
#
#   A connection to listener L (port p) from address a is admitted iff some ingress
#   rule of some group attached to L admits a (its `cidr` contains a, or a is inside
#   one of the `members` of its `source_group`) and p is in the rule's `ports`.
#
# An AWS security group applies to every port of the network interface it is attached
# to, while the broker applies a group only to the listeners it is attached to. So each
# rule's port range is intersected with the ports of the listeners its group is
# attached to (contiguous ports are merged into one range; a rule left with no port is
# dropped). With one port per listener, a port p of the instance then admits a in AWS
# iff the broker admits a on the listener bound to p: the two agree port by port.
#
# Everything here is pure (locals and outputs only) so that the test suite can apply
# this module offline and compare each rendered rule with the broker's decision.

locals {
  document = jsondecode(file(var.security_groups_file))

  groups = try(local.document.security_groups, {})

  # Listener name (upper case: the broker compares names case-insensitively) => the
  # groups attached to it. Grouping (`...`) keeps two spellings of one name from
  # aborting the plan here; a precondition reports them with a clearer message.
  attachments_grouped = { for l, names in try(local.document.listeners, {}) : upper(l) => names... }
  attachments         = { for l, lists in local.attachments_grouped : l => distinct(flatten(lists)) }

  listener_ports = { for l, p in var.listeners : upper(l) => p }

  # ---- addresses ------------------------------------------------------------------
  # The broker reads "10.0.1.7/24" as the network 10.0.1.0/24 and a bare address as a
  # /32 (/128 for IPv6); AWS wants the canonical network form, so every address
  # written in the file is normalised once here. An unparsable one maps to null and
  # fails the precondition in outputs.tf.
  raw_addresses = distinct(flatten([
    for g in values(local.groups) : concat(
      [for m in try(tolist(g.members), []) : tostring(m)],
      [for r in try(g.ingress, []) : tostring(r.cidr) if try(r.cidr, null) != null],
    )
  ]))
  with_prefix = {
    for a in local.raw_addresses : a => (
      strcontains(a, "/") ? trimspace(a) : format("%s/%d", trimspace(a), strcontains(a, ":") ? 128 : 32)
    )
  }
  normalized = {
    for a, c in local.with_prefix : a => try(format("%s/%s", cidrhost(c, 0), split("/", c)[1]), null)
  }

  group_members = {
    for g, group in local.groups : g => [for m in try(tolist(group.members), []) : local.normalized[tostring(m)]]
  }

  # ---- listeners of each group ----------------------------------------------------
  group_listeners = {
    for g, _ in local.groups : g => sort([for l, names in local.attachments : l if contains(names, g)])
  }
  # sort() orders strings, so ports are zero-padded before sorting and read back.
  group_ports = {
    for g, listeners in local.group_listeners : g => [
      for s in sort(distinct([
        for l in listeners : format("%05d", local.listener_ports[l]) if contains(keys(local.listener_ports), l)
      ])) : tonumber(s)
    ]
  }

  # ---- rules as written -------------------------------------------------------------
  rules_parsed = flatten([
    for g, group in local.groups : [
      for i, r in try(group.ingress, []) : {
        group        = g
        number       = i + 1 # the broker's "ingress rule N" of that group
        fields       = try(keys(r), ["(not an object)"])
        cidr_text    = try(tostring(r.cidr), null)
        cidr         = try(local.normalized[tostring(r.cidr)], null)
        source_group = try(tostring(r.source_group), null)
        ports_text   = try(lower(trimspace(tostring(r.ports))), null)
        description  = try(tostring(r.description), null)
      }
    ]
  ])

  # "all", "9092" (or the number 9092) and "9092-9098", as the broker parses them.
  rules_bounded = [
    for r in local.rules_parsed : merge(r, {
      bounds = (
        r.ports_text == null ? null :
        r.ports_text == "all" ? tolist([0, 65535]) :
        try(tolist([for s in split("-", r.ports_text) : tonumber(trimspace(s))]), null)
      )
    })
  ]
  rules_checked = [
    for r in local.rules_bounded : merge(r, {
      ports_valid = try(
        length(r.bounds) <= 2
        && alltrue([for p in r.bounds : p >= 0 && p <= 65535 && floor(p) == p])
        && r.bounds[0] <= r.bounds[length(r.bounds) - 1],
        false
      )
      from = try(r.bounds[0], null)
      to   = try(r.bounds[length(r.bounds) - 1], null)
    })
  ]

  # ---- the intersection with the group's listener ports -----------------------------
  rules_on_listener_ports = [
    for r in local.rules_checked : merge(r, {
      ports = [for p in local.group_ports[r.group] : p if try(r.ports_valid && p >= r.from && p <= r.to, false)]
    })
  ]
  # One range per run of consecutive listener ports (9092,9093 -> 9092-9093).
  ranges = flatten([
    for r in local.rules_on_listener_ports : [
      for s in r.ports : {
        rule      = r
        from_port = s
        to_port   = min([for q in r.ports : q if q >= s && !contains(r.ports, q + 1)]...)
      } if !contains(r.ports, s - 1)
    ]
  ])

  # AWS accepts only these characters in rule and group descriptions (255 at most).
  aws_description_chars = "/[^A-Za-z0-9. _:/()#,@\\[\\]+=&;{}!$*-]/"

  cidr_rules = [
    for x in local.ranges : {
      key          = format("%s/%d/%d-%d", x.rule.group, x.rule.number, x.from_port, x.to_port)
      group        = x.rule.group
      rule         = x.rule.number
      from_port    = x.from_port
      to_port      = x.to_port
      listeners    = [for l in local.group_listeners[x.rule.group] : l if try(local.listener_ports[l] >= x.from_port && local.listener_ports[l] <= x.to_port, false)]
      cidr_ipv4    = strcontains(x.rule.cidr, ":") ? null : x.rule.cidr
      cidr_ipv6    = strcontains(x.rule.cidr, ":") ? x.rule.cidr : null
      source_group = null
      members      = []
      description  = x.rule.description
      aws_description = substr(replace(
        coalesce(x.rule.description, format("%s ingress rule %d", x.rule.group, x.rule.number)),
        local.aws_description_chars, ""
      ), 0, 255)
    } if x.rule.cidr != null
  ]

  group_rules = [
    for x in local.ranges : {
      key          = format("%s/%d/%d-%d", x.rule.group, x.rule.number, x.from_port, x.to_port)
      group        = x.rule.group
      rule         = x.rule.number
      from_port    = x.from_port
      to_port      = x.to_port
      listeners    = [for l in local.group_listeners[x.rule.group] : l if try(local.listener_ports[l] >= x.from_port && local.listener_ports[l] <= x.to_port, false)]
      cidr_ipv4    = null
      cidr_ipv6    = null
      source_group = x.rule.source_group
      members      = try(local.group_members[x.rule.source_group], [])
      description  = x.rule.description
      aws_description = substr(replace(
        coalesce(x.rule.description, format("%s ingress rule %d (from group %s)", x.rule.group, x.rule.number, x.rule.source_group)),
        local.aws_description_chars, ""
      ), 0, 255)
    } if x.rule.cidr == null && x.rule.source_group != null && !var.expand_source_groups
  ]

  # The broker's own reading of a source_group rule: its members' addresses.
  expanded_group_rules = flatten([
    for x in local.ranges : [
      for m in local.group_members[x.rule.source_group] : {
        key          = format("%s/%d/%d-%d/%s", x.rule.group, x.rule.number, x.from_port, x.to_port, m)
        group        = x.rule.group
        rule         = x.rule.number
        from_port    = x.from_port
        to_port      = x.to_port
        listeners    = [for l in local.group_listeners[x.rule.group] : l if try(local.listener_ports[l] >= x.from_port && local.listener_ports[l] <= x.to_port, false)]
        cidr_ipv4    = strcontains(m, ":") ? null : m
        cidr_ipv6    = strcontains(m, ":") ? m : null
        source_group = x.rule.source_group
        members      = [m]
        description  = x.rule.description
        aws_description = substr(replace(
          coalesce(x.rule.description, format("%s ingress rule %d (member of group %s)", x.rule.group, x.rule.number, x.rule.source_group)),
          local.aws_description_chars, ""
        ), 0, 255)
      } if m != null
    ] if x.rule.cidr == null && x.rule.source_group != null && var.expand_source_groups && contains(keys(local.groups), coalesce(x.rule.source_group, "-"))
  ])

  rules = concat(local.cidr_rules, local.group_rules, local.expanded_group_rules)

  groups_out = {
    for g, group in local.groups : g => {
      description = try(tostring(group.description), null)
      aws_description = substr(replace(
        coalesce(try(tostring(group.description), null), format("Strata security group %s", g)),
        local.aws_description_chars, ""
      ), 0, 255)
      members   = local.group_members[g]
      listeners = local.group_listeners[g]
      ports     = local.group_ports[g]
    }
  }

  # ---- what the broker would refuse, checked here so a plan fails the same way -----
  unknown_top_level = try(setsubtract(keys(local.document), ["security_groups", "listeners"]), ["(the file is not a JSON object)"])
  unknown_group_fields = flatten([
    for g, group in local.groups : [for f in try(setsubtract(keys(group), ["description", "members", "ingress"]), ["(not an object)"]) : "${g}.${f}"]
  ])
  unknown_rule_fields = flatten([
    for r in local.rules_parsed : [for f in setsubtract(r.fields, ["cidr", "source_group", "ports", "description"]) : "${r.group} rule ${r.number}: ${f}"]
  ])
  unknown_listeners = [for l in keys(local.attachments) : l if !contains(keys(local.listener_ports), l)]
  unknown_attached_groups = flatten([
    for l, names in local.attachments : [for g in names : "${l} -> ${g}" if !contains(keys(local.groups), g)]
  ])
  bad_addresses = [for a, n in local.normalized : a if n == null]
  bad_sources = [
    for r in local.rules_parsed : "${r.group} rule ${r.number}" if(r.cidr_text == null) == (r.source_group == null)
  ]
  unknown_source_groups = [
    for r in local.rules_parsed : "${r.group} rule ${r.number}: ${r.source_group}"
    if r.source_group != null && !contains(keys(local.groups), coalesce(r.source_group, "-"))
  ]
  bad_ports = [
    for r in local.rules_checked : "${r.group} rule ${r.number}: ${coalesce(r.ports_text, "(missing)")}" if !r.ports_valid
  ]
}
