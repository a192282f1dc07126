"""Whole-call digests pinned as literals, and the fast path checked against the canonical one.

``digest_arguments`` writes plain JSON arguments (the usual LLM request)
straight with orjson and builds the tagged canonical form only for the rest.
The literals below were computed once and must never change: a change here
is a change of every stored key, which needs a CHANGELOG entry and a reason.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import hashlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import json_values, key_values

from memo._keys import canonical_json, digest_arguments


class Color(enum.Enum):
    # Named as the literal below was computed, however pytest imports this file.
    __module__ = "corpus"
    RED = "red"


NAN = float("nan")


def _nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return {"x": value}


CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi é 🙂"},
    ],
    "temperature": 0.0,
    "max_tokens": None,
}

TOOLS = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "weather?", "name": None}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ],
    "top_p": 1,
    "seed": -(2**63),
    "n": 2**64 - 1,
}

ROWS = [{"id": i, "tags": ["a", "b"], "score": i * 0.5, "ok": i % 2 == 0} for i in range(10)]

# (arguments, sha256 of their canonical JSON)
PINNED: dict[str, tuple[dict[str, Any], str]] = {
    "chat": (CHAT, "222bd5e361bff4601efb7fecdd9a906bf69a06d3792adbcf5b23cefcc50abcf5"),
    "tools": (TOOLS, "b9e597459733d96ff4e329acc485109457f52c87cfc43784c9b4f2b974c9bc9f"),
    "empty": ({}, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
    "empty-containers": (
        {"a": [], "b": {}, "c": "", "d": [[]], "e": [{}]},
        "11d20bfb119c172d2f3adb5ffa16b6ef4c15b78b8e34c8c3f303bc9e66044a9f",
    ),
    "scalars": (
        {"t": True, "f": False, "n": None, "i": 0, "neg": -1, "fl": 1.5, "z": -0.0, "big": 1e300},
        "e1c8f258c7071c4b5b46be6443d094e19a50fbb1be60fbabe93d361d68869879",
    ),
    "int-vs-float": (
        {"a": 1, "b": 1.0, "c": True, "d": "1"},
        "dd8506266e277031b35284cb010bd0c0afbe9d9fab4ae32d1a2da73023eea4ea",
    ),
    "int-bounds-out": (
        {"low": -(2**63) - 1, "high": 2**64},
        "83caceb9ae0364738e11891a07b0ca1916cc09f06e259ac98baacfc346f936f0",
    ),
    "nan-inf": (
        {"a": NAN, "b": float("inf"), "c": [float("-inf")], "d": {"x": NAN}},
        "d7ae0834b57f978b83af7211bae7a6b9fe7319639c5f37de3d885d2e309d8a74",
    ),
    "tuple": (
        {"a": (1, 2), "b": [(1,), [1]], "c": {"k": ()}},
        "b45c3df36ba8ffd0777f0bf7718d369d9487757de34a7d6c160a5355fdd0946b",
    ),
    "tagged-lookalike": (
        {"a": ["\x00tuple", [1, 2]], "b": [["\x00list"]], "c": {"\x00k": "\x00v"}},
        "294eaad94cba0e50e9e61370c864516c1e4b49dcfd0343ed0186b25896ee31e2",
    ),
    "non-str-keys": (
        {"a": {1: "x", "1": "y"}, "b": [{None: 1, 2.5: 2}]},
        "7cb31a873ae8d1bc29b6eef00b56f7b6960a8ad743973c0a3bcfa9f3951e532c",
    ),
    "surrogates": (
        {"a": "\udcff", "b": ["ok", "\ud800x"], "c": {"\udc80": 1}},
        "3302feb2e7a2ba61ed7a3752bdd6157351eebcbdab766d9b8a463bc0d3e5e499",
    ),
    "bytes-set": (
        {"a": b"\x00\xff", "b": {3, 1, 2}, "c": frozenset({"x"}), "d": bytearray(b"z")},
        "fe390d322e4c54b1b8bef3ea5da5cb6c04683b7278452c38f49abb05d53237ac",
    ),
    "stdlib": (
        {
            "a": uuid.UUID(int=7),
            "b": decimal.Decimal("1.10"),
            "c": datetime.date(2024, 1, 2),
            "d": Color.RED,
            "e": collections.OrderedDict(b=1, a=2),
        },
        "993de66d8167bebf9d6bf5252f446682045f3b17172dd6eae5164f0d7dec3f80",
    ),
    "mixed-list": (
        {"a": [1, "two", 3.0, None, True, [4, {"five": 5}], {"six": [6.5]}]},
        "1d2c3edee8dd1e7ca258c0d060b5d86826b0b4c614565feaefbd96925892873a",
    ),
    "ints-wide": (
        {"a": list(range(-50, 50)), "b": [2**63 - 1, -(2**63)]},
        "ae35467e3a2cb621693cc04bf3564898d119fecac3e3ea72957eff9d4179fe4c",
    ),
    "floats-wide": (
        {"a": [i / 7 for i in range(40)]},
        "9ff397bf36a4f15813e4ee8e13f1e54ef023b9ed433685cc60cdbd6a723b4ecd",
    ),
    "deep-63": (_nested(63), "f0f5c6f4b7a7be99f41ca4a4d6da73f9d27f8236b251d873440739cb6cd8e058"),
    "deep-64": (_nested(64), "974e45ae81584d780fb79166dc7332e145763f84a24f47fe7c266cf2f84166f3"),
    "str-subclass": (
        {"a": collections.UserString("x")},
        "01e6b9b837e5238df6da944681e26e62cc6645001daee45579febfc90de8669a",
    ),
    "rows": ({"rows": ROWS}, "121567442d14c0b53a1231ca934a424ccae3687de4a69bc603bd1473a9625c17"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_digests_are_pinned(name: str) -> None:
    """Each call's digest is exactly the pinned literal, on every Python and in every process."""
    arguments, expected = PINNED[name]
    assert digest_arguments(arguments, "f") == expected


def test_nesting_past_the_limit_is_refused() -> None:
    with pytest.raises(TypeError, match="nested deeper than 64 levels"):
        digest_arguments(_nested(65), "f")


def _slow_digest(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(arguments)).hexdigest()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_digests_are_the_canonical_form_hashed(name: str) -> None:
    arguments, expected = PINNED[name]
    if name == "deep-64":  # one level deeper as a whole dict than as arguments
        return
    assert _slow_digest(arguments) == expected


fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

argument_names = st.text(max_size=5)


@fast
@given(arguments=st.dictionaries(argument_names, json_values, max_size=5))
def test_plain_arguments_digest_like_their_canonical_form(arguments: dict[str, Any]) -> None:
    """The orjson fast path for plain JSON gives the canonical form's digest."""
    assert digest_arguments(arguments, "f") == _slow_digest(arguments)


@fast
@given(arguments=st.dictionaries(argument_names, key_values, max_size=5))
def test_any_arguments_digest_like_their_canonical_form(arguments: dict[str, Any]) -> None:
    """Whatever the fast path takes or leaves, the digest is the canonical form's."""
    assert digest_arguments(arguments, "f") == _slow_digest(arguments)
