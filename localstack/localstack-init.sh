#!/bin/bash
# LocalStack ready hook: creates the bucket Strata tiers to.
awslocal s3 mb s3://strata || true
