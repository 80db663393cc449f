"""Prompt tokens as the request's own model counts them, where it can; langchain-core's approximation elsewhere.

A chat model whose ``get_num_tokens_from_messages`` is a local tokenizer makes the hold exact: ``ChatOpenAI`` (and the
other langchain-openai classes) count with tiktoken, bound tools included; another class opts in with a class
attribute ``guardian_local_token_counter = True``. Other classes are approximated: some count by calling their
provider (``ChatAnthropic`` calls Anthropic's token-counting API), which would add a network round trip to every
call. Even a local tokenizer may need a download the first time (tiktoken fetches its encoding files), which
behind a firewall can hang for minutes. So the first
count of each model class runs off the agent's thread with a deadline: if it fails or is late, that class is
counted approximately from then on (logged once, ``token_counter_unavailable``), and the agent never waits more
than the deadline, once. The base class's own counter (GPT-2 through ``transformers``) is never used.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from guardian.logs import get_logger

__all__ = ["PromptCounter"]

FIRST_COUNT_DEADLINE_S = 2.0
_BASE_COUNTER = BaseChatModel.get_num_tokens_from_messages


class PromptCounter:
    def __init__(self, first_count_deadline_s: float = FIRST_COUNT_DEADLINE_S) -> None:
        self._deadline_s = first_count_deadline_s
        self._lock = threading.Lock()
        self._usable: dict[type, bool] = {}  # model class -> its counter works (absent: not tried yet)
        self._log = get_logger()

    def count(self, model: Any, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> int | None:
        """Tokens of ``messages`` and ``tools`` as ``model`` counts them, or None where it cannot (then the caller
        approximates)."""
        cls = type(model)
        counter = getattr(cls, "get_num_tokens_from_messages", None)
        if counter is None or counter is _BASE_COUNTER or not _local(cls):
            return None
        with self._lock:
            usable = self._usable.get(cls)
            if usable is None:
                self._usable[cls] = False  # while the first count runs, other calls approximate
        if usable is False:
            return None

        options = _options(cls)

        def run() -> int:
            found = model.get_num_tokens_from_messages(list(messages), tools=list(tools) or None, **options)
            return int(found)

        if usable is None:
            return self._first(cls, run)
        try:
            return run()
        except Exception:
            return None  # this call is approximated; the counter worked before and may again

    def _first(self, cls: type, run: Callable[[], int]) -> int | None:
        result: list[int] = []
        failure: list[BaseException] = []

        def attempt() -> None:
            try:
                result.append(run())
            except Exception as exc:
                failure.append(exc)

        worker = threading.Thread(target=attempt, name="guardian-token-count", daemon=True)
        worker.start()
        worker.join(self._deadline_s)
        if result and result[0] >= 0:
            with self._lock:
                self._usable[cls] = True
            return result[0]
        self._log.warning(
            "token_counter_unavailable",
            model_class=cls.__name__,
            error_type=type(failure[0]).__name__ if failure else "deadline",
            consequence="prompts of this model class are counted with langchain-core's approximation",
        )
        return None


def _local(cls: type) -> bool:
    """Whether the class counts tokens on this machine rather than by asking its provider."""
    return bool(getattr(cls, "guardian_local_token_counter", False)) or cls.__module__.startswith("langchain_openai.")


def _options(cls: type) -> dict[str, Any]:
    """Keywords that keep a counter off the network: ChatOpenAI would download images to count their tokens."""
    try:
        parameters = inspect.signature(cls.get_num_tokens_from_messages).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return {}
    return {"allow_fetching_images": False} if "allow_fetching_images" in parameters else {}
