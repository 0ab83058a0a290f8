"""stepsage: an image dataset in S3 becomes a tuned, checked, deployed classifier behind a URL."""

__version__ = "0.1.0"
