# The brokers: one network interface (fixed private address), optional EBS data
# volume and one instance each, placed round-robin over the three subnets so that
# broker i lives in availability zone i % 3 and reports that zone's id as broker.rack.

locals {
  brokers = {
    for i in range(var.broker_count) : tostring(i + 1) => {
      node_id    = i + 1
      subnet     = local.subnets[i % 3]
      private_ip = cidrhost(local.subnets[i % 3].cidr, var.broker_host_number_offset + i)
    }
  }
  # Node ids in numeric order (keys sort as strings: "1", "11", "2").
  node_ids = [for i in range(var.broker_count) : tostring(i + 1)]

  # What clients and peers are told: b-N.<zone> with a private zone, else the address.
  broker_hosts = {
    for k, b in local.brokers : k => var.private_dns_zone_name != null ? "b-${k}.${var.private_dns_zone_name}" : b.private_ip
  }

  # The config and user data are rendered by a provider-free module, which the test
  # suite applies offline and has the broker validate (strata --check-config).
  # Addresses are fixed before any instance exists (the network interfaces below), so
  # every broker's config can name all voters without a dependency cycle.
  quorum_voters = module.broker_config.quorum_voters

  unguarded_listeners = [
    for l in keys(local.listener_ports) : l if try(length(module.security_group_rules.listener_groups[l]), 0) == 0
  ]

  # ---- can the brokers reach each other? ----------------------------------------
  # The broker admits a peer on REPLICATION / CONTROLLER only if the file says so;
  # a file that forgets the brokers' own subnets yields a cluster that never forms.
  # Checked here, with the broker's semantics, on the rendered rules.
  inter_broker_denied = flatten([
    for k, b in local.brokers : [
      for l in ["REPLICATION", "CONTROLLER"] : "broker ${k} (${b.private_ip}) on ${l}" if !anytrue(flatten([
        for r in module.security_group_rules.rules : [
          for c in compact(concat([r.cidr_ipv4], r.members)) :
          try(cidrhost(format("%s/%s", b.private_ip, split("/", c)[1]), 0) == split("/", c)[0], false)
        ] if contains(r.listeners, l)
      ]))
    ]
  ])
}

module "broker_config" {
  source = "../broker-config"

  cluster_name = var.name
  brokers = {
    for k, b in local.brokers : k => {
      private_ip     = b.private_ip
      host           = local.broker_hosts[k]
      rack           = b.subnet.az_id
      data_volume_id = var.data_volume_size > 0 ? aws_ebs_volume.data[k].id : ""
    }
  }
  listeners                  = { for l, p in local.listener_ports : l => { port = p, protocol = local.listener_protocols[l] } }
  tls_keystore_secret_arn    = var.tls_keystore_secret_arn
  tls_truststore_pem         = var.tls_truststore_pem
  tls_client_authentication  = var.tls_client_authentication
  object_store_url           = "s3://${aws_s3_bucket.tier.id}/${var.object_prefix}"
  region                     = local.region
  kms_key_arn                = local.kms_key_arn
  default_replication_factor = var.default_replication_factor
  min_insync_replicas        = var.min_insync_replicas
  metrics_listener           = "${length(var.metrics_allowed_cidrs) > 0 ? "0.0.0.0" : "127.0.0.1"}:${var.metrics_port}"
  extra_broker_config = merge(var.extra_broker_config, var.log_delivery_prefix == null ? {} : {
    "logs.delivery.url" = "s3://${aws_s3_bucket.tier.id}/${var.log_delivery_prefix}"
  })
  security_groups_file   = var.security_groups_file
  strata_binary_url      = var.strata_binary_url
  strata_binary_sha256   = var.strata_binary_sha256
  cluster_id             = local.cluster_id
  scram_admin_secret_arn = var.scram_admin_secret_arn
  scram_admin_username   = var.scram_admin_username
}

resource "aws_network_interface" "broker" {
  for_each = local.brokers

  description = "Strata broker ${each.key} of ${var.name}"
  subnet_id   = each.value.subnet.id
  private_ips = [each.value.private_ip]
  # Every group of the file that a listener uses, and the module's node group.
  security_groups = concat(
    [for g in module.security_group_rules.attached_groups : aws_security_group.file[g].id],
    [aws_security_group.node.id],
  )

  tags = merge(local.tags, { Name = "${var.name}-b-${each.key}" })

  lifecycle {
    # The broker refuses to start when a listener bound beyond loopback has no group.
    precondition {
      condition     = length(local.unguarded_listeners) == 0
      error_message = "${var.security_groups_file} attaches no group to ${join(", ", local.unguarded_listeners)}; every listener binds 0.0.0.0, and the broker refuses a listener no group guards (default deny). Attach a group to each."
    }
    precondition {
      condition     = length(local.inter_broker_denied) == 0
      error_message = "${var.security_groups_file} does not admit the brokers to each other: ${join(", ", local.inter_broker_denied)}. Attach a group admitting the broker subnets (e.g. \"brokers\" with members = the subnets' CIDRs and a source_group rule on itself) to REPLICATION and CONTROLLER."
    }
    precondition {
      condition     = length(module.security_group_rules.attached_groups) + 1 <= var.max_security_groups_per_network_interface
      error_message = "The brokers would carry ${length(module.security_group_rules.attached_groups) + 1} security groups (one per group attached to a listener, plus the node group); the quota is ${var.max_security_groups_per_network_interface}. Merge groups in the file or raise the quota and max_security_groups_per_network_interface."
    }
  }
}

resource "aws_ebs_volume" "data" {
  #checkov:skip=CKV2_AWS_9:a broker's data volume is a replica (replication factor 3 across zones) whose sealed segments are also in S3; snapshots would copy what the cluster already keeps twice
  for_each = var.data_volume_size > 0 ? local.brokers : {}

  availability_zone = each.value.subnet.az
  size              = var.data_volume_size
  type              = var.data_volume_type
  iops              = var.data_volume_iops
  throughput        = var.data_volume_type == "gp3" ? var.data_volume_throughput : null
  encrypted         = true
  kms_key_id        = local.kms_key_arn

  tags = merge(local.tags, { Name = "${var.name}-b-${each.key}-data" })
}

resource "aws_instance" "broker" {
  for_each = local.brokers

  ami                     = local.ami_id
  instance_type           = var.instance_type
  iam_instance_profile    = aws_iam_instance_profile.broker.name
  ebs_optimized           = true
  monitoring              = true # 1-minute CloudWatch metrics (MSK's DEFAULT monitoring is per minute)
  disable_api_termination = var.termination_protection

  # gzip: the security-groups file and the scripts would otherwise approach the 16 KB
  # user-data limit; cloud-init unpacks it.
  user_data_base64 = base64gzip(module.broker_config.user_data[each.key])

  network_interface {
    network_interface_id = aws_network_interface.broker[each.key].id
    device_index         = 0
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # no container on the host may reach IMDS
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = local.kms_key_arn
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-b-${each.key}-root" })
  }

  tags = merge(local.tags, {
    Name             = "${var.name}-b-${each.key}"
    "strata:node-id" = each.key
    "strata:rack"    = each.value.subnet.az_id
  })

  lifecycle {
    # cloud-init reads user data at first boot only, and applying a change would stop
    # and start the instance (wiping its instance store) or, with replacement, all
    # brokers at once. Configuration and AMI changes therefore reach a broker when it
    # is replaced, one at a time: terraform apply -replace='...aws_instance.broker["2"]'
    # (README: "Changing the configuration").
    ignore_changes = [ami, user_data_base64]

    precondition {
      condition     = var.data_volume_size > 0 || data.aws_ec2_instance_type.broker.instance_storage_supported
      error_message = "${var.instance_type} has no instance store: pick an NVMe type or set data_volume_size."
    }
  }
}

resource "aws_volume_attachment" "data" {
  for_each = var.data_volume_size > 0 ? local.brokers : {}

  device_name = "/dev/sdf" # on Nitro an NVMe device; strata-prepare-data finds it by the volume id
  volume_id   = aws_ebs_volume.data[each.key].id
  instance_id = aws_instance.broker[each.key].id
  # Let the broker stop cleanly (controlled shutdown) before its log disappears.
  stop_instance_before_detaching = true
}
