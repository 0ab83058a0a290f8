"""The local cloud: stepsage's AWS services on one machine, with no AWS account and no Docker."""
