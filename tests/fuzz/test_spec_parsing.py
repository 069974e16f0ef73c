"""Hypothesis on TaskSpec parsing: any input is accepted or rejected cleanly, never crashes,
and an accepted spec keeps its workspace paths confined."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.domain.spec import TaskSpec

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
paths = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["a/../../etc", "/abs", "ok/file.txt", "..", ".", "a//b", "./x", "a/./b"]),
)

specs = st.fixed_dictionaries(
    {"command": st.lists(st.text(max_size=20), max_size=4)},
    optional={
        "env": st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3),
        "outputs": st.lists(paths, max_size=3),
        "inputs": st.lists(
            st.fixed_dictionaries({"artifact": st.text(max_size=80), "path": paths}), max_size=2
        ),
        "params": st.dictionaries(st.text(max_size=10), json_value, max_size=3),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "gpu": st.integers(-3, 100),
                "memory": st.text(max_size=8),
                "cpu": st.floats(allow_nan=False),
            },
        ),
        "timeout_s": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=True)),
        "retries": st.integers(-2, 30),
        "extra_field": json_value,
    },
)


@settings(max_examples=400, deadline=None)
@given(specs)
def test_spec_parsing_accepts_or_rejects_cleanly(raw: dict[str, Any]) -> None:
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            assert error["loc"] is not None and error["msg"]
        return
    assert "extra_field" not in raw
    for path in [*spec.outputs, *(i.path for i in spec.inputs)]:
        assert not path.startswith("/") and ".." not in path.split("/")
    assert spec.command and spec.command[0]
    assert spec.resources.gpu >= 0 and spec.retries >= 0
    assert TaskSpec.model_validate(spec.model_dump()) == spec  # round trip
