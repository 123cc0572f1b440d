"""``graph``: entity-graph recall of older dialogs (networkx).

Each session is a bipartite graph of dialogs and the entities they mention. A question's entities seed a
personalised PageRank walk, so recall reaches dialogs that mention the same entities directly *and* dialogs one
hop further (the question names "Rex", an old dialog says "Rex is my dog", another says "my dog lives in Lyon").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from sage_studio.memory.base import IndexedBackend
from sage_studio.memory.text import entities
from sage_studio.sessions.models import Dialog, RecalledDialog

# entity → dialog → entity → dialog: direct mentions and one bridge entity, no further (that is topic drift).
_MAX_HOPS = 3


def _dialog_node(key: int) -> tuple[str, int]:
    return ("dialog", key)


def _entity_node(name: str) -> tuple[str, str]:
    return ("entity", name)


@dataclass
class EntityGraph:
    """A session's dialog–entity graph."""

    graph: nx.Graph = field(default_factory=nx.Graph)
    mentions: dict[int, set[str]] = field(default_factory=dict)

    def add(self, dialog: Dialog) -> None:
        names = entities(f"{dialog.user}\n{dialog.assistant}")
        self.mentions[dialog.key] = names
        node = _dialog_node(dialog.key)
        self.graph.add_node(node, kind="dialog")
        for name in names:
            self.graph.add_node(_entity_node(name), kind="entity")
            self.graph.add_edge(node, _entity_node(name))


class GraphMemory(IndexedBackend[EntityGraph]):
    """Finds older dialogs linked to the question's entities, directly or through one shared entity."""

    name = "graph"

    def build(self, session_id: str, dialogs: list[Dialog]) -> EntityGraph:
        return self.extend(session_id, EntityGraph(), dialogs, dialogs)

    def extend(self, session_id: str, index: EntityGraph, all_dialogs: list[Dialog], new: list[Dialog]) -> EntityGraph:
        for dialog in new:
            index.add(dialog)
        return index

    def retrieve(self, index: EntityGraph, candidates: list[Dialog], query: str) -> list[RecalledDialog]:
        seeds = [_entity_node(name) for name in entities(query) if _entity_node(name) in index.graph]
        if not seeds:
            return []
        hops = nx.multi_source_dijkstra_path_length(index.graph, set(seeds), cutoff=_MAX_HOPS)
        reachable = [d for d in candidates if _dialog_node(d.key) in hops]
        if not reachable:
            return []
        rank = nx.pagerank(index.graph, alpha=0.85, personalization={node: 1.0 for node in seeds})
        seed_names = {node[1] for node in seeds}
        ranked = sorted(reachable, key=lambda d: rank.get(_dialog_node(d.key), 0.0), reverse=True)
        recalled = []
        for dialog in ranked[: self.config.top_k]:
            shared = sorted(index.mentions[dialog.key] & seed_names)
            if shared:
                reason = "mentions " + ", ".join(shared)
            else:
                bridges = sorted(
                    name
                    for name in index.mentions[dialog.key]
                    if any(
                        name in index.mentions[key] and index.mentions[key] & seed_names for key in index.mentions
                    )
                )
                reason = "linked through " + ", ".join(bridges[:5])
            recalled.append(
                RecalledDialog(
                    dialog=dialog.index,
                    user=dialog.user,
                    assistant=dialog.assistant,
                    score=round(rank.get(_dialog_node(dialog.key), 0.0), 6),
                    reason=reason,
                )
            )
        return recalled

    def describe(self, index: EntityGraph) -> dict[str, Any]:
        entity_count = sum(1 for _, kind in index.graph.nodes(data="kind") if kind == "entity")
        return {
            "type": "networkx",
            "dialogs": len(index.mentions),
            "entities": entity_count,
            "edges": index.graph.number_of_edges(),
        }
