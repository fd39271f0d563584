"""The 3.0 form of the document keeps what 3.1 says about null (service/openapi30.py)."""

from __future__ import annotations

from openapi_schema_validator import OAS30Validator

from procvision_runner.service.openapi30 import to_openapi_30


def _validator(schema: dict) -> tuple[dict, OAS30Validator]:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": {"A": schema, "B": {"type": "object"}}},
    }
    converted = to_openapi_30(doc)
    a = converted["components"]["schemas"]["A"]
    return a, OAS30Validator({**a, "components": converted["components"]})


def test_optional_scalars_and_enums_become_nullable_types_and_stay_strict() -> None:
    a, v = _validator(
        {
            "type": "object",
            "properties": {
                "verdict": {"anyOf": [{"type": "string", "enum": ["OK", "NG"]}, {"type": "null"}]},
                "count": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            },
        }
    )
    assert a["properties"]["verdict"] == {
        "type": "string",
        "enum": ["OK", "NG", None],
        "nullable": True,
    }
    assert a["properties"]["count"] == {"type": "integer", "minimum": 1, "nullable": True}
    assert v.is_valid({"verdict": None, "count": None})
    assert v.is_valid({"verdict": "NG", "count": 2})
    assert not v.is_valid({"verdict": "MAYBE"})
    assert not v.is_valid({"count": "two"})
    assert not v.is_valid({"count": 0})


def test_an_optional_reference_keeps_null_as_a_choice() -> None:
    a, v = _validator(
        {
            "type": "object",
            "properties": {
                "ref": {"anyOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}]}
            },
        }
    )
    assert a["properties"]["ref"]["anyOf"][0] == {"$ref": "#/components/schemas/B"}
    assert v.is_valid({"ref": None}) and v.is_valid({"ref": {}})
