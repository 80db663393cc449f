"""Identity names: None means the default, an empty name is a mistake that is refused by name."""

from __future__ import annotations

import pytest

from guardian import GuardianError
from guardian.errors import IdentityError
from guardian.identity import DEFAULT_NAME, Identity
from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory

CAP = {"budgets": [{"name": "cap", "scope": "run", "window": "run", "limits": {"llm_calls": 10}}]}


def test_none_means_the_default_name() -> None:
    """Leaving a field out (None) still selects the shared `default` name."""
    assert Identity.of() == Identity(DEFAULT_NAME, DEFAULT_NAME, DEFAULT_NAME)


@pytest.mark.parametrize("field", ["agent", "user", "tenant"])
@pytest.mark.parametrize("empty", ["", "   ", "\t\n"])
def test_an_empty_name_is_refused_and_the_field_is_named(field: str, empty: str) -> None:
    """An empty or whitespace-only agent, user or tenant raises IdentityError (a ValueError and a
    GuardianError) naming the field, instead of silently sharing the `default` buckets."""
    with pytest.raises(IdentityError, match=f"{field}.*empty") as caught:
        Identity.of(**{field: empty})
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, GuardianError)


@pytest.mark.parametrize("field", ["agent", "user", "tenant"])
def test_callback_refuses_an_empty_name(make_guardian: GuardianFactory, field: str) -> None:
    """guard.callback(user="") fails when the handler is made, before any run."""
    guard = make_guardian(CAP)
    with pytest.raises(IdentityError, match=field):
        guard.callback(**{field: ""})


@pytest.mark.parametrize("field", ["agent", "user", "tenant"])
def test_empty_name_in_run_metadata_refuses_the_call(make_guardian: GuardianFactory, field: str) -> None:
    """`guardian_user: ""` in a run's config metadata does not fall back to the handler's identity: the call is
    refused with an IdentityError naming the metadata key, whatever the fail mode, and the provider is not
    called."""
    guard = make_guardian(CAP)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    config = {"callbacks": [guard.callback(agent="a", user="u", tenant="t")], "metadata": {f"guardian_{field}": ""}}
    with pytest.raises(IdentityError, match=f"guardian_{field}.*empty"):
        model.invoke("q", config=config)  # type: ignore[arg-type]
    assert model.calls == 0
    assert guard.status() == []
