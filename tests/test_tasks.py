from __future__ import annotations

import typing

from medtransfer.tasks import METRICS, TASKS, TaskType


def test_task_literal_and_tuple_agree() -> None:
    assert typing.get_args(TaskType) == TASKS
    assert "auc" in METRICS and len(set(METRICS)) == len(METRICS)
