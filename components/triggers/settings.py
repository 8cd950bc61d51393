"""The ``triggers`` section of params.yaml: what starts a deletion batch in ``mixunlearn serve`` besides its cron
schedule and request events. Kept apart from the queue code so that loading the configuration never imports boto3.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class S3QueueConfig(BaseModel):
    """Where the S3 request queue lives (``components/triggers/s3_queue.py``). The endpoint (``S3_ENDPOINT_URL``)
    and credentials (``AWS_*``) come from the environment, never from here.

    Attributes:
        bucket: Bucket name; it must exist (``serve`` checks it and stops with one line when it does not).
        prefix: Key prefix of the queue's folders (``incoming/``, ``claims/``, ``processed/``, ``rejected/``).
        claim_ttl_seconds: Age after which a claim whose holder never finished may be broken by another claimer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field("mixunlearn/requests", pattern=r"^[A-Za-z0-9._/-]*$")
    claim_ttl_seconds: float = Field(900.0, gt=0)


class TriggersConfig(BaseModel):
    """The watcher ``serve`` runs beside its deployments (``pipelines/triggers.py``).

    Attributes:
        poll_seconds: How often it lists the S3 queue and reads the committed data version.
        coalesce_seconds: A burst of arrivals ends after this long without a new one; then one batch starts.
        max_wait_seconds: A burst that never goes quiet still starts its batch this long after it opened.
        data_change: Start a batch when ``data.dvc`` at ``HEAD`` changes by a commit the pipeline did not make.
        s3_queue: The S3 request queue; None (the default) leaves it off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_seconds: float = Field(5.0, gt=0)
    coalesce_seconds: float = Field(10.0, ge=0)
    max_wait_seconds: float = Field(120.0, gt=0)
    data_change: bool = True
    s3_queue: S3QueueConfig | None = None

    @model_validator(mode="after")
    def _wait_covers_window(self) -> TriggersConfig:
        if self.max_wait_seconds < self.coalesce_seconds:
            raise ValueError("max_wait_seconds must be at least coalesce_seconds")
        return self
