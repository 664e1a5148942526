"""GraphQL request handling without graphql-core's executor (too slow for 50 rich items in 5 ms).

graphql-core parses and validates each distinct document once against `schema.graphql` (cached);
variables are coerced by graphql-core on every request; the selection set is compiled once into a
tree of `Selection`s that projects the payload dicts the simulator builds. Fragments are inlined;
directives (@skip/@include) are refused with a clear error, as this contract does not use them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    get_named_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

_CACHE_SIZE: Final = 256
INTROSPECTION_FIELDS: Final = frozenset({"__schema", "__type"})


@cache
def schema() -> GraphQLSchema:
    sdl = resources.files("feedsim").joinpath("schema.graphql").read_text(encoding="utf-8")
    return build_schema(sdl)


class RequestError(Exception):
    """The request as a whole is refused (HTTP 400): bad JSON, syntax, validation or variables."""

    def __init__(self, errors: list[dict[str, Any]], kind: str) -> None:
        super().__init__("; ".join(str(error.get("message")) for error in errors))
        self.errors = errors
        self.kind = kind


def error(message: str, code: str, path: list[str | int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if path is not None:
        body["path"] = path
    body["extensions"] = {"code": code}
    return body


def _formatted(errors: list[GraphQLError], code: str) -> list[dict[str, Any]]:
    out = []
    for item in errors:
        body = dict(item.formatted)
        extensions = body.get("extensions")
        body["extensions"] = {**(extensions if isinstance(extensions, dict) else {}), "code": code}
        out.append(body)
    return out


@dataclass(frozen=True)
class Variables:
    """Coerced variable values, in graphql-core's own form (a dict before 3.3, a NamedTuple since)."""

    native: Any

    @property
    def values(self) -> dict[str, Any]:
        return dict(getattr(self.native, "coerced", self.native))


@dataclass(frozen=True)
class Selection:
    key: str  # response key (alias or name)
    name: str
    node: FieldNode
    field: GraphQLField | None  # None for __typename
    children: tuple[Selection, ...] | None
    typename: str  # the parent type's name (the value of __typename)
    # True when the selection asks for every field of its type, in schema order, without aliases:
    # the payload built for that type is then already the answer and is returned untouched.
    identity: bool = False

    def arguments(self, variables: Variables) -> dict[str, Any]:
        if self.field is None:
            return {}
        return get_argument_values(self.field, self.node, variables.native)


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode
    operation: OperationDefinitionNode
    root: tuple[Selection, ...]

    @property
    def introspection(self) -> bool:
        return any(selection.name in INTROSPECTION_FIELDS for selection in self.root)

    def coerce_variables(self, raw: Mapping[str, Any] | None) -> Variables:
        result = get_variable_values(schema(), self.operation.variable_definitions or (), dict(raw or {}))
        if isinstance(result, list):
            raise RequestError(_formatted(result, "BAD_USER_INPUT"), "bad_input")
        return Variables(result)


def _collect(
    selection_set: SelectionSetNode,
    parent: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> tuple[Selection, ...]:
    fields: OrderedDict[str, Selection] = OrderedDict()
    for node in selection_set.selections:
        if node.directives:
            raise RequestError(
                [error("directives are not supported by the simulator", "GRAPHQL_VALIDATION_FAILED")],
                "validation",
            )
        if isinstance(node, FieldNode):
            selection = _field(node, parent, fragments)
            existing = fields.get(selection.key)
            if existing is not None and existing.children is not None and selection.children is not None:
                merged = OrderedDict((child.key, child) for child in existing.children)
                merged.update((child.key, child) for child in selection.children)
                selection = Selection(
                    existing.key,
                    existing.name,
                    existing.node,
                    existing.field,
                    tuple(merged.values()),
                    existing.typename,
                    existing.field is not None
                    and _is_identity(tuple(merged.values()), get_named_type(existing.field.type)),
                )
            fields[selection.key] = selection if existing is None or selection.children else existing
        else:
            inner = (
                fragments[node.name.value].selection_set
                if isinstance(node, FragmentSpreadNode)
                else node.selection_set
                if isinstance(node, InlineFragmentNode)
                else None
            )
            if inner is not None:
                for selection in _collect(inner, parent, fragments):
                    fields.setdefault(selection.key, selection)
    return tuple(fields.values())


def _field(node: FieldNode, parent: GraphQLObjectType, fragments: Mapping[str, FragmentDefinitionNode]) -> Selection:
    name = node.name.value
    key = node.alias.value if node.alias else name
    if name.startswith("__"):
        return Selection(key, name, node, None, None, parent.name)
    field = parent.fields[name]
    if node.selection_set is None:
        return Selection(key, name, node, field, None, parent.name)
    child_type = get_named_type(field.type)
    children = _collect(node.selection_set, child_type, fragments)
    return Selection(key, name, node, field, children, parent.name, _is_identity(children, child_type))


def _is_identity(children: tuple[Selection, ...], child_type: Any) -> bool:
    assert isinstance(child_type, GraphQLObjectType)  # validated: only objects have selections
    return [child.name for child in children] == list(child_type.fields) and all(
        child.key == child.name and (child.children is None or child.identity) for child in children
    )


def _prepare(query: str, operation_name: str | None) -> Prepared:
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise RequestError(_formatted([exc], "GRAPHQL_PARSE_FAILED"), "parse") from None
    problems = validate(schema(), document)
    if problems:
        raise RequestError(_formatted(problems, "GRAPHQL_VALIDATION_FAILED"), "validation")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation_name is not None:
        operations = [op for op in operations if op.name is not None and op.name.value == operation_name]
    if len(operations) != 1:
        message = (
            f"unknown operation named {operation_name!r}"
            if operation_name is not None
            else "must provide operation name if query contains multiple operations"
        )
        raise RequestError([error(message, "GRAPHQL_VALIDATION_FAILED")], "validation")
    operation = operations[0]
    if operation.operation is not OperationType.QUERY:
        raise RequestError(
            [error(f"{operation.operation.value} operations are not supported", "GRAPHQL_VALIDATION_FAILED")],
            "validation",
        )
    query_type = schema().query_type
    assert query_type is not None
    return Prepared(document, operation, _collect(operation.selection_set, query_type, fragments))


class DocumentCache:
    """Parsed and validated documents by (text, operation name); failures are cached too."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str | None], Prepared | RequestError] = OrderedDict()

    def get(self, query: str, operation_name: str | None) -> Prepared:
        key = (query, operation_name)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = _prepare(query, operation_name)
            except RequestError as exc:
                entry = exc
            self._entries[key] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, RequestError):
            raise entry
        return entry


def project(value: Any, node: Selection) -> Any:
    """Shape a built payload (dict or list of dicts) to `node`'s selection set."""
    if value is None or node.identity:
        return value
    if isinstance(value, list):
        return [project(item, node) for item in value]
    out: dict[str, Any] = {}
    for selection in node.children or ():
        if selection.name == "__typename":
            out[selection.key] = selection.typename
        elif selection.children is None:
            out[selection.key] = value.get(selection.name)
        else:
            out[selection.key] = project(value.get(selection.name), selection)
    return out
