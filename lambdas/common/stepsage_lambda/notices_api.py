"""SNS in the pipeline's own verbs: publish a notice to the stack's topic."""

from __future__ import annotations

from typing import Any

from stepsage_lambda.clients import client as default_client

# SNS refuses a subject that is not ASCII, holds a line break or reaches 100 characters.
SUBJECT_MAX = 99


class NoticesApi:
    def __init__(self, sns_client: Any | None = None) -> None:
        self._sns = sns_client or default_client("sns")

    def publish(self, topic_arn: str, subject: str, message: str) -> str:
        """Publish one notice; returns its message id. The subject is made one printable ASCII line."""
        line = "".join(c if " " <= c <= "~" else "?" for c in subject)[:SUBJECT_MAX] or "stepsage"
        published = self._sns.publish(TopicArn=topic_arn, Subject=line, Message=message)
        return str(published["MessageId"])
