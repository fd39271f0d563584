"""The OpenAPI 3.0 form of the service's 3.1 document, for client generators that need 3.0.

FastAPI emits OpenAPI 3.1 (JSON Schema 2020-12). What 3.0 lacks is rewritten: `null` in a
type or an anyOf becomes `nullable: true`, `const` an enum of one, `examples` one `example`,
numeric exclusive bounds the boolean form, binary content (`contentMediaType`) `format: binary`.
Hand-written because no maintained library does this conversion (decision in architecture.md).
"""

import copy
from typing import Any

__all__ = ["to_openapi_30"]


def to_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """Return a converted deep copy of a FastAPI 3.1 document as OpenAPI 3.0.3."""
    doc = copy.deepcopy(document)
    doc["openapi"] = "3.0.3"
    doc.pop("jsonSchemaDialect", None)
    doc.pop("webhooks", None)
    for path_item in doc.get("paths", {}).values():
        _walk(path_item)
    components = doc.get("components", {})
    for key in ("schemas", "responses", "parameters", "requestBodies"):
        for name, value in list(components.get(key, {}).items()):
            components[key][name] = _schema(value) if key == "schemas" else _walk(value)
    return doc


def _walk(node: Any) -> Any:
    """Convert every `schema` object found under an operation, parameter or media type."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == "schema" and isinstance(value, dict):
                node[key] = _schema(value)
            else:
                _walk(value)
    elif isinstance(node, list):
        for item in node:
            _walk(item)
    return node


def _schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _schema(v) if k not in ("enum", "default", "example", "const") else v
        for k, v in schema.items()
    }
    for key in ("properties", "patternProperties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: _schema(s) for name, s in out[key].items()}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "examples" in out:
        examples = out.pop("examples")
        if isinstance(examples, list) and examples:
            out["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[plain] = value
            out[bound] = True
    if out.pop("contentMediaType", None) is not None or "contentEncoding" in out:
        out.pop("contentEncoding", None)
        out.setdefault("type", "string")
        out["format"] = "binary"
    types = out.get("type")
    if isinstance(types, list):
        rest = [t for t in types if t != "null"]
        if len(rest) < len(types):
            out["nullable"] = True
        if len(rest) == 1:
            out["type"] = rest[0]
        elif rest:
            out.pop("type")
            out["anyOf"] = [{"type": t} for t in rest]
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if not isinstance(options, list):
            continue
        # the options were converted above: a `{"type": "null"}` is `{"nullable": true}` by now
        rest = [o for o in options if o not in ({"type": "null"}, {"nullable": True})]
        if len(rest) == len(options) or any("$ref" in o for o in rest):
            # 3.0 has no nullable reference (`nullable` needs a `type` beside it): the null
            # option stays one of the choices, so validators and clients still accept null
            continue
        out["nullable"] = True
        if len(rest) == 1:
            out.pop(key)
            only = rest[0]
            if "$ref" in only:
                out["allOf"] = [only]  # 3.0 ignores siblings of $ref
            else:
                out.update(only)
        else:
            out[key] = rest
    if out.get("type") == "null":
        out.pop("type")
        out["nullable"] = True
    if out.get("nullable") and isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]  # 3.0.3: a nullable enum lists null itself
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out
