"""Typed errors of the pipeline Lambdas; their class names are the error names the state machine matches."""

from __future__ import annotations


class StepsageError(Exception):
    """Base of every error a stepsage Lambda raises on purpose."""


class InvalidResourceName(StepsageError, ValueError):
    """A derived name does not fit SageMaker's limits."""


class ConfigurationError(StepsageError, ValueError):
    """An environment variable or request field holds a value the pipeline cannot use."""


class NoCompletedTrainingJob(StepsageError):
    """The tuning job finished without a best training job."""


class RulesStillEvaluating(StepsageError):
    """Rule evaluation has not finished yet; CheckRules' Retry waits it out with backoff."""


class EndpointBusy(StepsageError):
    """The endpoint is being created or updated by another run; Deploy's Retry waits for it."""


class ArtifactMissing(StepsageError):
    """An expected file is not inside a job's model.tar.gz or output.tar.gz."""


class SmokeTestFailed(StepsageError):
    """The deployed endpoint scored below evaluation.json's accuracy minus the margin; it was rolled back."""
