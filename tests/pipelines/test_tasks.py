import re
from pathlib import Path

import pytest

from pipelines.tasks import report_key


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist", "CIFAR10", "svhn.v2"])
def test_report_key_is_a_valid_prefect_artifact_key(dataset: str) -> None:
    # when
    key = report_key(dataset)
    # then: Prefect refuses anything but lowercase letters, digits and dashes
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert key.startswith("deletion-report-")


def test_report_keys_of_different_datasets_differ() -> None:
    assert report_key("fashion_mnist") != report_key("digits")


def test_served_deployments_run_batches_and_the_audit_on_their_own_schedules_and_events() -> None:
    from components.config import PipelineConfig
    from pipelines.deployments import REQUEST_EVENT, build_deployments
    from pipelines.tasks import AUDIT_DUE_EVENT
    from pipelines.triggers import BATCH_DUE_EVENT

    config = PipelineConfig()
    deployments = {d.name: d for d in build_deployments(config, Path("/srv/project"), "0 2 * * *", None)}
    assert set(deployments) == {"digits-scheduled", "digits-on-request", "digits-retrain-audit", "digits-on-change"}
    audit = deployments["digits-retrain-audit"]
    assert audit.flow_name == "retrain-audit"
    assert [schedule.schedule.cron for schedule in audit.schedules] == [config.audit.cron]
    assert [set(trigger.expect) for trigger in audit.triggers] == [{AUDIT_DUE_EVENT}]
    assert [set(trigger.expect) for trigger in deployments["digits-on-request"].triggers] == [{REQUEST_EVENT}]
    assert deployments["digits-scheduled"].flow_name == "deletion-batch"
    assert deployments["digits-on-change"].flow_name == "deletion-batch"
    assert [set(trigger.expect) for trigger in deployments["digits-on-change"].triggers] == [{BATCH_DUE_EVENT}]
    override = build_deployments(config, Path("/srv/project"), "0 2 * * *", "*/30 * * * *")
    assert [s.schedule.cron for s in override[2].schedules] == ["*/30 * * * *"]
