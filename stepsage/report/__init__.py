"""Run reports: what one pipeline execution did, drawn from the AWS APIs."""
