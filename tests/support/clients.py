"""gRPC clients of a stack that carry one credential, and the CLI that makes them."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support.stack import Stack


def cli(stack: Stack, *args: str) -> str:
    return stack.tasktrail(*args)


def make_token(stack: Stack, role: str, *grants: str) -> str:
    argv = ["tokens", "create", "--name", f"test {role}", "--role", role]
    for grant in grants:
        argv += ["--grant", grant]
    return cli(stack, *argv).splitlines()[0]


class As:
    """Stubs whose calls carry one token (or none)."""

    def __init__(self, stack: Stack, token: str | None) -> None:
        plain = grpc.insecure_channel(stack.grpc_target)
        self.channel = grpc.intercept_channel(plain, WithToken(token)) if token else plain
        self.reader = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.writer = writer_service_pb2_grpc.TaskWriterServiceStub(self.channel)

    def get(self, task_id: str) -> task_pb2.Task:
        return self.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=10).task

    def create(self, scope: task_pb2.Scope.ValueType, entity: str) -> task_pb2.Task:
        request = writer_service_pb2.CreateTaskRequest(scope=scope, entity_id=entity, type="create")
        return self.writer.CreateTask(request, timeout=10).task


def code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()
