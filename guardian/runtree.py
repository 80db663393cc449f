"""Which run each framework event belongs to, and when a run ends: the lifecycle every adapter shares.

Frameworks report nested work (a graph, its nodes, their model and tool calls) as a tree of ids. The run is the
tree's root: events of any node below it charge the same budgets and feed the same loop detector. A run ends when
its root ends; when the root was never seen (an adapter attached below the top), when the last node seen under it
ends. Adapters without a tree (one key per invocation) use it with no parents.

Thread-safe: frameworks deliver events on worker threads (graph fan-out) and in executors. Bounded: runs whose
end never arrived (a crash between events) are ended oldest first past ``max_runs``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from guardian.runs import RunState
from guardian.supervisor import Supervisor

__all__ = ["RunTree"]

K = TypeVar("K", bound=Hashable)


class RunTree(Generic[K]):
    def __init__(self, supervisor: Supervisor, *, max_runs: int = 10_000) -> None:
        self.supervisor = supervisor
        self._max_runs = max_runs
        self._lock = threading.Lock()
        self._root_of: dict[K, K] = {}  # every live node -> the root of its run
        self._runs: OrderedDict[K, RunState] = OrderedDict()  # root -> run, oldest first
        self._members: dict[K, set[K]] = {}  # root -> live nodes under it, to drop them together

    def enter(self, node: K, parent: K | None, start: Callable[[K], RunState]) -> tuple[RunState, bool]:
        """The run ``node`` belongs to, and whether it started now: a node whose parent is unknown is a root, and
        ``start(root)`` begins its run (it may raise, e.g. an identity the policy refuses: nothing is kept then)."""
        stale: list[RunState] = []
        with self._lock:
            root = node if parent is None else self._root_of.get(parent, parent)
            run = self._runs.get(root)
            started = run is None
            if run is None:
                run = start(root)
                self._runs[root] = run
                self._members[root] = set()
                while len(self._runs) > self._max_runs:
                    stale += filter(None, [self._drop(next(iter(self._runs)))])
            self._root_of[node] = root
            self._members[root].add(node)
        for old in stale:
            self.supervisor.end_run(old)
        return run, started

    def run_of(self, node: K) -> RunState | None:
        with self._lock:
            root = self._root_of.get(node)
            return None if root is None else self._runs.get(root)

    def leave(self, node: K, error: BaseException | None = None) -> None:
        """``node`` ended. Its run ends with it if it is the root, or if it was the last node seen under a root
        that was never seen itself."""
        with self._lock:
            root = self._root_of.pop(node, None)
            if root is None:
                return
            members = self._members.get(root)
            if members is not None:
                members.discard(node)
            unseen_root_done = root not in self._root_of and not members
            if node != root and not unseen_root_done:
                return
            run = self._drop(root)
        if run is not None:
            self.supervisor.end_run(run, error=error)

    @property
    def live_nodes(self) -> int:
        """Nodes whose end has not arrived yet, in every live run (a leak shows here)."""
        with self._lock:
            return len(self._root_of) + sum(len(m) for m in self._members.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def _drop(self, root: K) -> RunState | None:
        run = self._runs.pop(root, None)
        for member in self._members.pop(root, set()):
            self._root_of.pop(member, None)
        self._root_of.pop(root, None)
        return run
