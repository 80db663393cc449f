"""``guard.router(model, models={...})``: routing rules for a plain LangGraph (or LCEL) app that uses the callback.

The callback sees a model call only after the model was chosen, so it cannot swap it. The router is a small
runnable standing where the model stands (``router.invoke(messages, config)``, ``bind_tools`` first): before each
call it asks Guardian, through the callback handler in the call's config, whether a routing rule holds for the run,
and calls the routed model or the default one. The call's reservation and record then name the route and what it
saved, as with the middleware.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from guardian.integrations.langchain import GuardianCallbackHandler

__all__ = ["make_router"]


def make_router(default: Runnable[Any, Any], models: Mapping[str, Runnable[Any, Any]]) -> Runnable[Any, Any]:
    """``default`` is the model asked for; ``models`` the ones routes may send calls to, by ``"provider:model"``
    (bound with the same tools as ``default``)."""
    provider, name = _ls_names(default)

    def choose(config: RunnableConfig) -> Runnable[Any, Any]:
        manager = config.get("callbacks")
        handlers = getattr(manager, "handlers", None) or []
        node = getattr(manager, "parent_run_id", None)
        for handler in handlers:
            if isinstance(handler, GuardianCallbackHandler):
                route = handler.route_for(node if isinstance(node, UUID) else None, provider, name, models.keys())
                if route is not None and not route.shadow:
                    return models[":".join(route.target)]
                break
        return default

    def call(messages: Any, config: RunnableConfig) -> Any:
        return choose(config).invoke(messages, config)

    async def acall(messages: Any, config: RunnableConfig) -> Any:
        return await choose(config).ainvoke(messages, config)

    return RunnableLambda(call, afunc=acall, name="guardian_router")


def _ls_names(model: Runnable[Any, Any]) -> tuple[str | None, str]:
    """The provider and model name a (possibly bound) chat model reports to LangSmith, as routes name models."""
    inner: Any = getattr(model, "bound", model)
    kwargs = getattr(model, "kwargs", {}) or {}
    try:
        params = inner._get_ls_params(**kwargs)
    except Exception:
        return None, str(getattr(inner, "model_name", "") or getattr(inner, "model", ""))
    return params.get("ls_provider"), str(params.get("ls_model_name") or "")
