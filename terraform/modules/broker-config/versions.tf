# No provider: this module only turns its inputs into text (each broker's
# /etc/strata/strata.toml and cloud-init user data). The test suite applies it
# offline and has the broker itself validate every rendered config.
terraform {
  required_version = ">= 1.9.0"
}
