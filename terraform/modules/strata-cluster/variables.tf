# ---- general --------------------------------------------------------------------

variable "name" {
  description = "Cluster name: prefixes every resource name and tag (like an MSK cluster name). Lower-case letters, digits and dashes."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters: lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of Name and strata:cluster)."
  type        = map(string)
  default     = {}
}

# ---- network (MSK: "VPC", "Subnets") ---------------------------------------------

variable "vpc_id" {
  description = "An existing VPC to deploy into. null: the module creates a VPC with three private subnets, an S3 gateway endpoint and the interface endpoints the brokers need (no internet gateway, no NAT)."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "With vpc_id: three private subnets in three different availability zones, one broker per subnet in turn. Their route tables must reach S3 (a gateway endpoint or a NAT) and, when TLS, SCRAM or Session Manager is on, Secrets Manager / SSM (interface endpoints or a NAT)."
  type        = list(string)
  default     = null

  validation {
    condition     = (var.vpc_id == null) == (var.subnet_ids == null)
    error_message = "Set vpc_id and subnet_ids together (an existing network), or neither (the module creates one)."
  }

  validation {
    condition     = var.subnet_ids == null || try(length(distinct(var.subnet_ids)) == 3 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))]), false)
    error_message = "subnet_ids must be three distinct subnet ids (subnet-0123...), one per availability zone."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC the module creates (ignored with vpc_id)."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && !strcontains(var.vpc_cidr, ":")
    error_message = "vpc_cidr must be an IPv4 CIDR such as 10.0.0.0/16."
  }
}

variable "private_subnet_cidrs" {
  description = "CIDRs of the three private subnets the module creates, one per availability zone (ignored with vpc_id). Keep them in step with the brokers' group members in security_groups_file."
  type        = list(string)
  default     = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]

  validation {
    condition     = length(var.private_subnet_cidrs) == 3 && alltrue([for c in var.private_subnet_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "private_subnet_cidrs must be three IPv4 CIDRs."
  }
}

variable "availability_zone_ids" {
  description = "Availability zone ids (use1-az1, ...) of the three subnets the module creates. null: the region's first three zones that need no opt-in. Ids, not names, because names map to different zones in different accounts; the id is also what each broker reports as broker.rack."
  type        = list(string)
  default     = null

  validation {
    condition     = var.availability_zone_ids == null || try(length(distinct(var.availability_zone_ids)) == 3, false)
    error_message = "availability_zone_ids must name three distinct zones."
  }
}

variable "private_dns_zone_name" {
  description = "A Route 53 private hosted zone the module creates in the VPC (e.g. strata.internal), with b-1, b-2, ... records the brokers advertise, as MSK's b-1.<cluster>... names. null: the brokers advertise their private IP addresses."
  type        = string
  default     = null

  validation {
    condition     = var.private_dns_zone_name == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z][a-z0-9-]*[a-z0-9]$", var.private_dns_zone_name))
    error_message = "private_dns_zone_name must be a DNS name such as strata.internal."
  }
}

variable "session_manager_enabled" {
  description = "Lets operators open a shell on the brokers with SSM Session Manager (no SSH, no key pair, no open port): attaches AmazonSSMManagedInstanceCore to the broker role and, in a VPC the module creates, adds the ssm, ssmmessages and ec2messages endpoints."
  type        = bool
  default     = true
}

variable "flow_logs_retention_days" {
  description = "Retention of the VPC flow logs (CloudWatch Logs, encrypted with the cluster's KMS key) of a VPC the module creates."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_logs_retention_days)
    error_message = "flow_logs_retention_days must be a CloudWatch Logs retention of at least a year (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

# ---- brokers (MSK: "Broker type", "Number of brokers per zone", "Storage") -------

variable "instance_type" {
  description = "Broker instance type: a storage-optimised type with local NVMe instance store (i4i, i4g, is4gen, im4gn, i3en, i7i, i7ie, i8g). The NVMe holds the partition logs at /var/lib/strata unless data_volume_size puts them on EBS."
  type        = string
  default     = "i4i.large"

  validation {
    condition     = can(regex("^(i3en|i4i|i4g|i7i|i7ie|i8g|im4gn|is4gen)\\.[0-9a-z-]+$", var.instance_type))
    error_message = "instance_type must be a storage-optimised type with NVMe instance store: i3en, i4i, i4g, i7i, i7ie, i8g, im4gn or is4gen (e.g. i4i.large, is4gen.medium)."
  }
}

variable "broker_count" {
  description = "Number of brokers, spread over the three subnets in turn (one per availability zone). Every broker is also a metadata-quorum voter (process.roles=broker,controller), so the count is odd: 3 tolerates one lost broker, 5 two."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 3 && var.broker_count <= 15 && var.broker_count % 2 == 1 && floor(var.broker_count) == var.broker_count
    error_message = "broker_count must be an odd number from 3 to 15 (every broker is a quorum voter; an even count adds no fault tolerance)."
  }
}

variable "ami_id" {
  description = "AMI of the brokers. null: the latest Amazon Linux 2023 for the instance type's architecture (x86_64 or arm64), read from the public SSM parameter. The bootstrap scripts expect systemd, cloud-init, the AWS CLI v2 and dnf, as on Amazon Linux 2023. The AMI is read once: a newer one reaches a broker only when it is replaced (see the README's rolling replacement)."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "root_volume_size" {
  description = "Root volume (gp3, encrypted with the cluster's KMS key) size in GiB: the OS, the binary and the journal; the data lives elsewhere."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be from 8 to 1024 GiB."
  }
}

variable "data_volume_size" {
  description = "0: the partition logs live on the instance's NVMe instance store (striped with RAID 0 when it has several devices): the fastest, but wiped when an instance stops or is replaced, after which the broker recovers from its peers and S3. >0: an encrypted EBS volume of this many GiB per broker holds them instead and survives instance replacement (MSK's model)."
  type        = number
  default     = 0

  validation {
    condition     = var.data_volume_size == 0 || (var.data_volume_size >= 10 && var.data_volume_size <= 16384)
    error_message = "data_volume_size must be 0 (instance store) or from 10 to 16384 GiB."
  }
}

variable "data_volume_type" {
  description = "EBS type of the data volume (with data_volume_size > 0)."
  type        = string
  default     = "gp3"

  validation {
    condition     = contains(["gp3", "io2"], var.data_volume_type)
    error_message = "data_volume_type must be gp3 or io2."
  }
}

variable "data_volume_iops" {
  description = "Provisioned IOPS of the data volume (gp3: 3000-16000, io2: required). null: the type's baseline."
  type        = number
  default     = null
}

variable "data_volume_throughput" {
  description = "Provisioned throughput of a gp3 data volume in MiB/s (125-1000). null: the 125 MiB/s baseline. MSK calls this provisioned storage throughput."
  type        = number
  default     = null

  validation {
    condition     = var.data_volume_throughput == null || try(var.data_volume_throughput >= 125 && var.data_volume_throughput <= 1000, false)
    error_message = "data_volume_throughput must be from 125 to 1000 MiB/s."
  }
}

variable "broker_host_number_offset" {
  description = "Broker i (from 0) gets the private address cidrhost(its subnet, offset + i). The addresses are fixed before the instances exist (pre-created network interfaces), so controller.quorum.voters can name them. In an existing subnet make sure these addresses are free."
  type        = number
  default     = 10

  validation {
    condition     = var.broker_host_number_offset >= 4 && var.broker_host_number_offset <= 200
    error_message = "broker_host_number_offset must be from 4 to 200 (AWS reserves the first four addresses of a subnet)."
  }
}

variable "termination_protection" {
  description = "EC2 termination protection on the brokers (turn off before terraform destroy)."
  type        = bool
  default     = false
}

# ---- the strata binary ----------------------------------------------------------

variable "strata_binary_url" {
  description = "Where each broker downloads the strata binary at first boot: s3://bucket/key (read with the broker role, which gets s3:GetObject on that object only; the bucket must be in the cluster's region) or https://... (needs a route to the internet: a NAT in an existing VPC). The binary must match the instance type's architecture (x86_64 for i4i/i3en/i7i*, aarch64 for i4g/is4gen/im4gn/i8g). A VPC the module creates has no internet route, so use s3:// there."
  type        = string

  validation {
    condition     = can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^'\\s]+|https://[^'\\s]+)$", var.strata_binary_url))
    error_message = "strata_binary_url must be s3://bucket/key or https://... (no quotes or spaces)."
  }

  validation {
    condition     = var.vpc_id != null || startswith(var.strata_binary_url, "s3://")
    error_message = "The VPC this module creates has no route to the internet: publish the binary to S3 and give an s3:// URL (or deploy into an existing VPC with a NAT)."
  }
}

variable "strata_binary_sha256" {
  description = "SHA-256 of the binary (sha256sum strata): checked before it is installed; a mismatch stops the bootstrap and the broker never starts."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.strata_binary_sha256))
    error_message = "strata_binary_sha256 must be 64 lower-case hex digits."
  }
}

# ---- security groups (MSK: "Security groups") ------------------------------------

variable "security_groups_file" {
  description = "The broker's security-groups JSON (security.groups.file). The same file is written verbatim to /etc/strata/security-groups.json on every broker and rendered into AWS security groups (one per group of the file; see the README for how ports are intersected with listeners). Every group attached to a listener is attached to the brokers."
  type        = string
}

variable "source_group_rules" {
  description = "How a source_group rule of the file becomes an AWS rule. \"security_group\": referenced_security_group_id of that group's security group (AWS admits the network interfaces that carry it). \"members\": one CIDR rule per member of the group (exactly the broker's reading, addresses inside members)."
  type        = string
  default     = "security_group"

  validation {
    condition     = contains(["security_group", "members"], var.source_group_rules)
    error_message = "source_group_rules must be security_group or members."
  }
}

variable "max_security_groups_per_network_interface" {
  description = "AWS quota of security groups per network interface (5 unless raised). The brokers carry one group per group attached to a listener plus the module's node group; a plan that needs more stops here rather than at apply."
  type        = number
  default     = 5

  validation {
    condition     = var.max_security_groups_per_network_interface >= 2 && var.max_security_groups_per_network_interface <= 16
    error_message = "max_security_groups_per_network_interface must be from 2 to 16."
  }
}

variable "listener_ports" {
  description = "Listener ports, MSK's for the client listeners: plaintext 9092 (PLAINTEXT), tls 9094 (SSL), sasl_scram 9096 (SASL_SSL); replication (REPLICATION, between brokers) and controller (CONTROLLER, the metadata quorum) are Strata's own."
  type = object({
    plaintext   = optional(number, 9092)
    replication = optional(number, 9093)
    tls         = optional(number, 9094)
    controller  = optional(number, 9095)
    sasl_scram  = optional(number, 9096)
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.listener_ports) : p >= 1024 && p <= 65535 && floor(p) == p])
    error_message = "Listener ports must be integers from 1024 to 65535 (the broker runs unprivileged)."
  }

  validation {
    condition     = length(distinct(values(var.listener_ports))) == 5
    error_message = "Listener ports must be distinct."
  }
}

variable "metrics_allowed_cidrs" {
  description = "Who may scrape the Prometheus /metrics endpoint (MSK: open monitoring). Empty: metrics.listener binds 127.0.0.1 (a local agent scrapes it). Otherwise it binds 0.0.0.0 and the module's node security group admits these CIDRs on metrics_port; the broker's security groups do not guard this endpoint, the AWS rule does."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.metrics_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "metrics_allowed_cidrs must be CIDRs."
  }
}

variable "metrics_port" {
  description = "Port of the /metrics endpoint."
  type        = number
  default     = 9644

  validation {
    condition     = var.metrics_port >= 1024 && var.metrics_port <= 65535
    error_message = "metrics_port must be from 1024 to 65535."
  }
}

# ---- encryption in transit and authentication ------------------------------------

variable "client_broker_encryption" {
  description = "MSK's client-broker encryption in transit: \"TLS\" (SSL listener only), \"TLS_PLAINTEXT\" (SSL and PLAINTEXT listeners) or \"PLAINTEXT\". TLS needs tls_keystore_secret_arn and tls_truststore_pem."
  type        = string
  default     = "TLS"

  validation {
    condition     = contains(["TLS", "TLS_PLAINTEXT", "PLAINTEXT"], var.client_broker_encryption)
    error_message = "client_broker_encryption must be TLS, TLS_PLAINTEXT or PLAINTEXT."
  }
}

variable "in_cluster_encryption" {
  description = "MSK's encryption within the cluster: the REPLICATION and CONTROLLER listeners speak mutual TLS (each broker presents the keystore certificate and requires one from the truststore's CA)."
  type        = bool
  default     = true
}

variable "sasl_scram_enabled" {
  description = "MSK's SASL/SCRAM authentication: a SASL_SSL listener with SCRAM-SHA-512 (needs the TLS keystore). Users live in the metadata quorum; see scram_admin_secret_arn for the first one."
  type        = bool
  default     = false
}

variable "tls_client_authentication" {
  description = "MSK's TLS client authentication: the SSL client listener requires a client certificate signed by a CA of tls_truststore_pem (ssl.client.auth=required); the principal is the certificate subject."
  type        = bool
  default     = false
}

variable "tls_keystore_secret_arn" {
  description = "Secrets Manager secret (ARN) whose SecretString is the brokers' PEM keystore: the PKCS#8 private key followed by the certificate chain. One certificate serves every broker, so its subjectAltNames must name every advertised host and, with in_cluster_encryption, every broker IP (see the tls_subject_alt_names output). Fetched at boot and every hour (strata-secrets.timer), so a rotated secret reaches the brokers without a restart. Not in user data: user data is not secret."
  type        = string
  default     = null

  validation {
    condition     = var.tls_keystore_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^'\\s]+$", var.tls_keystore_secret_arn))
    error_message = "tls_keystore_secret_arn must be a Secrets Manager secret ARN."
  }

  validation {
    condition     = var.tls_keystore_secret_arn != null || (var.client_broker_encryption == "PLAINTEXT" && !var.in_cluster_encryption && !var.sasl_scram_enabled)
    error_message = "TLS listeners (client_broker_encryption TLS or TLS_PLAINTEXT, in_cluster_encryption, sasl_scram_enabled) need tls_keystore_secret_arn."
  }
}

variable "tls_truststore_pem" {
  description = "PEM of the CA certificate(s) the brokers trust: for client certificates (tls_client_authentication) and for each other (in_cluster_encryption). Public data, written from user data to /etc/strata/tls/truststore.pem."
  type        = string
  default     = null

  validation {
    condition     = var.tls_truststore_pem == null || can(regex("-----BEGIN CERTIFICATE-----", var.tls_truststore_pem))
    error_message = "tls_truststore_pem must hold PEM certificates."
  }

  validation {
    condition     = var.tls_truststore_pem != null || (!var.in_cluster_encryption && !var.tls_client_authentication)
    error_message = "in_cluster_encryption and tls_client_authentication need tls_truststore_pem (the CA that signed the brokers' and clients' certificates)."
  }
}

variable "scram_admin_secret_arn" {
  description = "Secrets Manager secret (ARN) whose SecretString is the password of the first SCRAM-SHA-512 user (scram_admin_username), created by `strata storage format --add-scram` at each broker's first boot. Letters and digits only (aws secretsmanager get-random-password --exclude-punctuation). null: create users later with kafka-configs."
  type        = string
  default     = null

  validation {
    condition     = var.scram_admin_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^'\\s]+$", var.scram_admin_secret_arn))
    error_message = "scram_admin_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "scram_admin_username" {
  description = "Name of the first SCRAM user (with scram_admin_secret_arn)."
  type        = string
  default     = "admin"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.@-]{1,64}$", var.scram_admin_username))
    error_message = "scram_admin_username must be 1-64 letters, digits or _.@-."
  }
}

variable "secrets_kms_key_arn" {
  description = "The customer-managed KMS key encrypting the Secrets Manager secrets above, if any: the broker role may kms:Decrypt with it through Secrets Manager only. null: the secrets use the aws/secretsmanager key."
  type        = string
  default     = null

  validation {
    condition     = var.secrets_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$", var.secrets_kms_key_arn))
    error_message = "secrets_kms_key_arn must be a KMS key ARN."
  }
}

# ---- tiered storage: S3 and KMS (MSK: "Encryption at rest") ----------------------

variable "bucket_name" {
  description = "Name of the tier bucket the module creates. null: <name>-tier-<random suffix>."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "object_prefix" {
  description = "Key prefix of the tiered segments in the bucket (object_store.url = s3://BUCKET/PREFIX). The broker role may touch nothing outside it."
  type        = string
  default     = "strata"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*()-]+(/[A-Za-z0-9!_.*()-]+)*$", var.object_prefix))
    error_message = "object_prefix must be one or more path segments (letters, digits, !_.*()-) without leading or trailing slash."
  }
}

variable "bucket_versioning_enabled" {
  description = "S3 versioning of the tier bucket. On: a deleted or overwritten segment stays as a noncurrent version for noncurrent_version_expiration_days (protection against a bad delete, at the cost of that storage). Off: versioning is left suspended; retention deletes free the space at once."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "With versioning: days a noncurrent (deleted or overwritten) object version is kept."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which S3 aborts a multipart upload a broker started but never completed (a broker that died mid-upload), freeing its parts."
  type        = number
  default     = 2

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365
    error_message = "abort_incomplete_multipart_upload_days must be from 1 to 365."
  }
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete a non-empty tier bucket (and every tiered segment in it). Keep false outside experiments."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the tier bucket (SSE-KMS), the EBS volumes and the flow logs. null: the module creates one with yearly rotation. A key you pass must let the account's IAM policies use it and, for flow logs of a VPC the module creates, CloudWatch Logs."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/UUID), not an alias."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before a created KMS key is deleted after terraform destroy. Objects encrypted with it are unreadable once it is gone."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be from 7 to 30."
  }
}

variable "log_delivery_prefix" {
  description = "MSK's broker log delivery to S3: the brokers write their log as gzip'd JSON lines under s3://BUCKET/<this prefix>/ in the tier bucket (logs.delivery.url; see the broker README, \"Metrics and logs\"), and the broker role may put objects there. null: logs stay in the journal (journalctl -u strata)."
  type        = string
  default     = null

  validation {
    condition     = var.log_delivery_prefix == null || can(regex("^[A-Za-z0-9!_.*()-]+(/[A-Za-z0-9!_.*()-]+)*$", var.log_delivery_prefix))
    error_message = "log_delivery_prefix must be one or more path segments without leading or trailing slash."
  }

  validation {
    condition     = var.log_delivery_prefix == null || try(var.log_delivery_prefix != var.object_prefix && !startswith(var.log_delivery_prefix, "${var.object_prefix}/") && !startswith(var.object_prefix, "${var.log_delivery_prefix}/"), false)
    error_message = "log_delivery_prefix must not overlap object_prefix (the tier's segments)."
  }
}

# ---- broker configuration (MSK: "Cluster configuration") ------------------------

variable "default_replication_factor" {
  description = "default.replication.factor (auto-created topics and CreateTopics without one). With one broker per availability zone, 3 puts a replica in each zone."
  type        = number
  default     = 3

  validation {
    condition     = var.default_replication_factor >= 1 && var.default_replication_factor <= var.broker_count
    error_message = "default_replication_factor must be from 1 to broker_count."
  }
}

variable "min_insync_replicas" {
  description = "min.insync.replicas: with acks=all, how many replicas must have a write before it is acknowledged. 2 of 3 survives the loss of one zone for reads and writes."
  type        = number
  default     = 2

  validation {
    condition     = var.min_insync_replicas >= 1 && var.min_insync_replicas <= var.default_replication_factor
    error_message = "min_insync_replicas must be from 1 to default_replication_factor."
  }
}

variable "extra_broker_config" {
  description = "More broker keys written into /etc/strata/strata.toml (key = value, values as strings), e.g. logs.delivery.url, log.retention.hours, auto.create.topics.enable, authorizer.class.name, super.users. See config/msk-like.toml and the broker README for every key. Keys the module sets itself cannot be overridden here."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_broker_config), [
      "node.id", "broker.id", "process.roles", "controller.quorum.voters", "controller.listener.names",
      "listeners", "advertised.listeners", "listener.security.protocol.map", "inter.broker.listener.name",
      "broker.rack", "log.dirs", "log.dir", "security.groups.file", "object_store.url", "object_store.region",
      "object_store.sse", "object_store.sse.kms.key.id", "object_store.sse.bucket.key.enabled",
      "ssl.keystore.location", "ssl.truststore.location", "metrics.listener", "logs.delivery.url",
    ])) == 0
    error_message = "extra_broker_config cannot set keys the module manages (node.id, listeners, controller.quorum.voters, broker.rack, log.dirs, security.groups.file, object_store.*, ssl.*store.location, metrics.listener, logs.delivery.url, ...): use the module's variables."
  }

  validation {
    condition     = alltrue([for k in keys(var.extra_broker_config) : can(regex("^[a-z][a-z0-9_.-]*$", k))])
    error_message = "extra_broker_config keys are broker config names: lower case, dots, dashes and underscores."
  }
}
