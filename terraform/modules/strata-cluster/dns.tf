# Optional private DNS names, as MSK gives its brokers b-1.<cluster>... names: a
# private hosted zone visible only inside the VPC, one A record per broker. The
# address is the broker's fixed network-interface address, so a record never changes
# when its broker is replaced.

resource "aws_route53_zone" "private" {
  #checkov:skip=CKV2_AWS_38:DNSSEC signing is not available for private hosted zones
  #checkov:skip=CKV2_AWS_39:query logging of a private zone goes through Route 53 Resolver query logging, configured per VPC by the account's logging setup
  count = var.private_dns_zone_name != null ? 1 : 0

  name    = var.private_dns_zone_name
  comment = "Strata cluster ${var.name}: broker names"

  vpc {
    vpc_id = local.vpc_id
  }

  tags = local.tags
}

resource "aws_route53_record" "broker" {
  for_each = var.private_dns_zone_name != null ? local.brokers : {}

  zone_id = aws_route53_zone.private[0].zone_id
  name    = "b-${each.key}.${var.private_dns_zone_name}"
  type    = "A"
  ttl     = 300
  records = [aws_instance.broker[each.key].private_ip]
}
