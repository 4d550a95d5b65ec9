"""A Flower ``Grid`` that calls ClientApps in this process: the app logic without processes.

Each node has its own ``Context`` (node config, persistent ``state``), as a SuperNode keeps
one per run; ``silent_from`` makes a node stop answering from a given message type on, the
in-process stand-in for a node that dies.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

SERVER_NODE_ID = 1


class InProcessGrid(Grid):
    def __init__(
        self,
        client_app: ClientApp,
        node_configs: dict[int, dict],
        run_id: int = 7,
        silent_from: dict[int, tuple[str, str]] | None = None,
    ) -> None:
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SERVER_NODE_ID, 1
        self.client_app = client_app
        self.contexts = {
            node: Context(
                run_id=run_id, node_id=node, node_config=cfg, state=RecordDict(), run_config={}
            )
            for node, cfg in node_configs.items()
        }
        self.silent_from = dict(silent_from or {})  # node -> (group_id, message_type)
        self._silenced: set[int] = set()
        self._ids = itertools.count(1)
        self._replies: dict[str, Message] = {}

    @property
    def run(self):  # pragma: no cover - not used by the apps
        raise NotImplementedError

    def set_run(self, run) -> None:  # pragma: no cover - not used by the apps
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # pragma: no cover - not used by the apps
        raise NotImplementedError

    def get_node_ids(self) -> list[int]:
        return [n for n in self.contexts if n not in self._silenced]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            mid = f"m{next(self._ids)}"
            message.metadata.__dict__["_message_id"] = mid
            node = message.metadata.dst_node_id
            key = (message.metadata.group_id, message.metadata.message_type)
            if self.silent_from.get(node) == key:
                self._silenced.add(node)
            if node not in self._silenced:
                self._replies[mid] = self.client_app(message, self.contexts[node])
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(m) for m in list(message_ids) if m in self._replies]

    def send_and_receive(self, messages, *, timeout=None):  # pragma: no cover - not used
        raise NotImplementedError
