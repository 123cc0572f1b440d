"""``PipelineBuilder``: check a ``VisualPipeline`` and turn it into a runnable DAG of operator instances.

Every problem found is reported as an ``Issue`` that names the node or connection at fault, so the editor can
highlight it and the API can answer 422 with a sentence a person understands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from pydantic import ValidationError

from pipelines.models import DEFAULT_OUTPUT_PORT, Connection, VisualPipeline
from pipelines.operators.base import Operator, OperatorEnv, compatible
from pipelines.registry import NodeRegistry, default_registry


@dataclass(frozen=True)
class Issue:
    """One validation problem. ``code`` is stable (for programs); ``message`` is for people."""

    code: str
    message: str
    node: str | None = None
    connection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "node": self.node, "connection": self.connection}


class PipelineValidationError(ValueError):
    """Raised by ``PipelineBuilder.build`` with every issue found; ``str()`` reads as one paragraph."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__(" ".join(issue.message for issue in issues))


def _config_message(node_id: str, type_name: str, error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "missing":
            parts.append(f"'{where}' is required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"'{where}' is not a setting of {type_name}")
        else:
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            reason = err["msg"].removeprefix("Value error, ")
            parts.append(f"'{where}': {reason}{got}" if err["loc"] else reason)
    return f"Node '{node_id}' ({type_name}) has an invalid config: {'; '.join(parts)}."


@dataclass
class BuiltPipeline:
    """A validated pipeline: operator instances, the DAG, and which inputs feed each node port."""

    pipeline: VisualPipeline
    operators: dict[str, Operator]
    graph: nx.DiGraph
    # node id → port name → source node ids, in connection order
    feeds: dict[str, dict[str, list[str]]]
    order: list[str] = field(default_factory=list)

    @property
    def terminals(self) -> list[str]:
        """Nodes nothing reads from: their outputs are the pipeline's result."""
        return [n for n in self.order if self.graph.out_degree(n) == 0]

    def static_nodes(self) -> set[str]:
        """Nodes whose output cannot change between inputs (no input-reading ancestor, cacheable operator):
        a document corpus, its chunks and its embeddings are computed once per built pipeline, not per input."""
        static: set[str] = set()
        for node in self.order:
            op = self.operators[node]
            if op.cacheable and not op.reads_input and all(p in static for p in self.graph.predecessors(node)):
                static.add(node)
        return static


class PipelineBuilder:
    """Validates pipelines against a ``NodeRegistry`` and builds them into ``BuiltPipeline``s."""

    def __init__(self, registry: NodeRegistry | None = None, env: OperatorEnv | None = None):
        self.registry = registry or default_registry()
        self.env = env

    def validate(self, pipeline: VisualPipeline) -> list[Issue]:
        """Every issue of the pipeline (an empty list means it can be built)."""
        issues, _ = self._check(pipeline)
        return issues

    def build(self, pipeline: VisualPipeline) -> BuiltPipeline:
        """A runnable DAG; raises ``PipelineValidationError`` listing every issue otherwise."""
        issues, checked = self._check(pipeline)
        if issues:
            raise PipelineValidationError(issues)
        configs, feeds, graph = checked
        env = self.env or OperatorEnv.from_environment()
        operators = {
            node.id: self.registry.get(node.type)(configs[node.id], env) for node in pipeline.nodes
        }
        order = list(nx.lexicographical_topological_sort(graph))
        return BuiltPipeline(pipeline=pipeline, operators=operators, graph=graph, feeds=feeds, order=order)

    def _check(self, pipeline: VisualPipeline):
        issues: list[Issue] = []
        if not pipeline.nodes:
            return [Issue("empty_pipeline", f"Pipeline '{pipeline.name}' has no nodes: add at least one operator.")], None

        nodes: dict[str, Any] = {}
        for node in pipeline.nodes:
            if node.id in nodes:
                issues.append(Issue("duplicate_node", f"Two nodes share the id '{node.id}': node ids must be unique.",
                                    node=node.id))
            nodes[node.id] = node

        configs: dict[str, Any] = {}
        for node in nodes.values():
            op = self.registry.get(node.type)
            if op is None:
                issues.append(Issue(
                    "unknown_type",
                    f"Node '{node.id}' has unknown type '{node.type}'. Known types: {', '.join(self.registry.types())}.",
                    node=node.id,
                ))
                continue
            try:
                configs[node.id] = op.Config.model_validate(node.config)
            except ValidationError as exc:
                issues.append(Issue("invalid_config", _config_message(node.id, node.type, exc), node=node.id))

        graph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        feeds: dict[str, dict[str, list[str]]] = {node_id: {} for node_id in nodes}
        seen: set[tuple[str, str, str | None]] = set()
        for conn in pipeline.connections:
            issue = self._check_connection(conn, nodes, feeds, seen)
            if issue is not None:
                issues.append(issue)
            elif conn.source != conn.target:
                graph.add_edge(conn.source, conn.target)
            else:
                issues.append(Issue("cycle", f"Connection '{conn.label}' connects node '{conn.source}' to itself.",
                                    node=conn.source, connection=conn.label))

        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " → ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            issues.append(Issue("cycle", f"Connections form a cycle ({path}): a pipeline must be acyclic.",
                                node=cycle[0][0]))

        for node_id, node in nodes.items():
            op = self.registry.get(node.type)
            if op is None:
                continue
            for port_name, port in op.inputs.items():
                sources = feeds[node_id].get(port_name, [])
                if port.required and not sources:
                    issues.append(Issue(
                        "missing_input",
                        f"Input '{port_name}' of node '{node_id}' ({node.type}) is not connected: "
                        f"connect a {port.type.value} output to it.",
                        node=node_id,
                    ))
                if len(sources) > 1 and not port.multiple:
                    issues.append(Issue(
                        "too_many_inputs",
                        f"Input '{port_name}' of node '{node_id}' takes one connection but has {len(sources)} "
                        f"(from {', '.join(sources)}); use a join node to combine them.",
                        node=node_id,
                    ))
        return issues, (configs, feeds, graph)

    def _check_connection(self, conn: Connection, nodes, feeds, seen) -> Issue | None:
        for end, node_id in (("source", conn.source), ("target", conn.target)):
            if node_id not in nodes:
                return Issue("dangling_connection",
                             f"Connection '{conn.label}' has {end} node '{node_id}', which does not exist.",
                             connection=conn.label)
        source_op = self.registry.get(nodes[conn.source].type)
        target_op = self.registry.get(nodes[conn.target].type)
        if source_op is None or target_op is None:
            return None  # reported as an unknown type already
        if conn.source_port != DEFAULT_OUTPUT_PORT:
            return Issue("unknown_port",
                         f"Connection '{conn.label}': node '{conn.source}' has no output port '{conn.source_port}' "
                         f"(its only output is '{DEFAULT_OUTPUT_PORT}').", node=conn.source, connection=conn.label)
        port_name = conn.target_port
        if port_name is None:
            if len(target_op.inputs) != 1:
                choices = ", ".join(target_op.inputs) or "none"
                return Issue("unknown_port",
                             f"Connection '{conn.label}' must name the target port of node '{conn.target}' "
                             f"({target_op.type_name} inputs: {choices}).", node=conn.target, connection=conn.label)
            port_name = next(iter(target_op.inputs))
        if port_name not in target_op.inputs:
            choices = ", ".join(target_op.inputs) or "none"
            return Issue("unknown_port",
                         f"Connection '{conn.label}': node '{conn.target}' ({target_op.type_name}) has no input "
                         f"'{port_name}' (its inputs: {choices}).", node=conn.target, connection=conn.label)
        produced, accepted = source_op.output, target_op.inputs[port_name].type
        if not compatible(produced, accepted):
            return Issue("incompatible_ports",
                         f"Connection '{conn.label}' joins incompatible ports: node '{conn.source}' produces "
                         f"{produced.value} but input '{port_name}' of node '{conn.target}' expects {accepted.value}.",
                         connection=conn.label)
        key = (conn.source, conn.target, port_name)
        if key in seen:
            return Issue("duplicate_connection",
                         f"Connection '{conn.label}' appears twice: connect each pair of ports once.",
                         connection=conn.label)
        seen.add(key)
        feeds[conn.target].setdefault(port_name, []).append(conn.source)
        return None
