# No provider on purpose: this module only reads a file and computes values, so it
# can be initialised and applied with no network access (the offline test in
# tests/python/test_terraform.py does exactly that and checks every rendered rule
# against the broker's own `strata security-groups check`).
terraform {
  required_version = ">= 1.9.0"
}
