"""A run's lineage graph as inline SVG plus a table of its nodes (the console's run page)."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any, NamedTuple
from urllib.parse import quote

COLUMN_W, ROW_H, NODE_W, NODE_H, PAD = 260, 74, 220, 50, 24
COLORS = {
    "data": "#2b7a78",
    "commit": "#6b5b95",
    "task": "#1f4e79",
    "artifact": "#8a5a00",
    "model": "#a4343a",
    "service": "#3d7a3d",
}


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: each node one column right of its furthest upstream node."""
    ups: dict[str, list[str]] = defaultdict(list)
    for src, dst in edges:
        ups[dst].append(src)
    layer: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str]) -> int:
        if node in layer:
            return layer[node]
        if node in seen:  # a cycle cannot happen in lineage, but a bad store must not hang
            return 0
        value = max((depth(u, seen | {node}) + 1 for u in ups[node]), default=0)
        layer[node] = value
        return value

    for node in nodes:
        depth(node, frozenset())
    return layer


def _links(node: dict[str, Any], links: dict[str, str]) -> list[tuple[str, str]]:
    kind = node["kind"]
    ident = node["id"].split(":", 1)[1]
    out = []
    if kind == "task":
        out.append(("task page", f"/ui/tasks/{ident}"))
        out.append(("lineage", f"/v1/tasks/{ident}/lineage"))
        if node.get("mlflow_run_id") and links.get("mlflow"):
            out.append(
                (
                    "MLflow run",
                    f"{links['mlflow'].rstrip('/')}/#/experiments/"
                    f"{node.get('mlflow_experiment_id') or 0}/runs/"
                    f"{node['mlflow_run_id']}",
                )
            )
    elif kind == "commit":
        out.append(("tasks that ran it", f"/ui/lookup?q={ident}"))
        if links.get("git"):
            out.append(("commit", links["git"].replace("{commit}", ident)))
    elif kind == "artifact":
        out.append(("producers", f"/ui/lookup?q={ident}"))
    elif kind == "model":
        out.append(("registered by / used by", f"/ui/lookup?q={quote(ident)}"))
    elif kind == "data":
        out.append(("runs using it", f"/ui/lookup?q={quote(ident)}"))
    return out


class Parts(NamedTuple):
    """The pieces of a run's lineage view: code commits, the graph, the table of nodes."""

    commits: str
    graph: str
    table: str


def _svg(
    run_id: str, nodes: dict[str, Any], pairs: list[tuple[str, str]], layer: dict[str, int]
) -> str:
    columns: dict[int, list[str]] = defaultdict(list)
    for node in sorted(nodes, key=lambda n: (nodes[n]["kind"], nodes[n].get("label", n))):
        columns[layer[node]].append(node)
    pos = {
        node: (PAD + col * COLUMN_W, PAD + row * ROW_H)
        for col, members in columns.items()
        for row, node in enumerate(members)
    }
    width = PAD * 2 + (max(columns, default=0) + 1) * COLUMN_W
    height = PAD * 2 + max((len(m) for m in columns.values()), default=1) * ROW_H
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" '
        f'role="img" aria-label="lineage graph of run {escape(run_id)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#777"/></marker>'
        "</defs>",
    ]
    for src, dst in pairs:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        svg.append(
            f'<path class="edge" d="M{x1 + NODE_W},{y1 + NODE_H / 2} C{x1 + NODE_W + 30},'
            f'{y1 + NODE_H / 2} {x2 - 30},{y2 + NODE_H / 2} {x2},{y2 + NODE_H / 2}" '
            'fill="none" stroke="#999" marker-end="url(#arrow)"/>'
        )
    for node_id, (x, y) in pos.items():
        svg.append(_node(node_id, nodes[node_id], x, y))
    svg.append("</svg>")
    return "".join(svg)


def _node(node_id: str, node: dict[str, Any], x: int, y: int) -> str:
    kind = node["kind"]
    label = str(node.get("label") or node_id)
    sub = {
        "task": node.get("status", ""),
        "artifact": node_id[9:21] + "…",
        "data": "md5 " + str(node.get("md5", ""))[:10] + "…",
    }.get(kind, "")
    href = f"#{escape(quote(node_id, safe=''))}"
    return (
        f'<a href="{href}"><g class="node node-{kind}" data-node="{escape(node_id)}">'
        f"<title>{escape(node_id)}</title>"
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" '
        f'fill="{COLORS.get(kind, "#555")}"/>'
        f'<text x="{x + 10}" y="{y + 20}" fill="#fff" font-size="13" font-weight="bold">'
        f"{escape(kind)}: {escape(label[:26])}</text>"
        f'<text x="{x + 10}" y="{y + 38}" fill="#eee" font-size="11">{escape(sub)}</text>'
        "</g></a>"
    )


def parts(run: dict[str, Any], graph: dict[str, Any], links: dict[str, str]) -> Parts:
    """RUN (the run record), GRAPH (LineageGraph.run_graph), LINKS: base URLs for buttons."""
    every = {n["id"]: n for n in graph["nodes"]}
    # Commits feed every task of a run: drawn, their edges would cross the whole picture,
    # so they head the page instead (and stay in the table below).
    commits = sorted(n for n in every if every[n]["kind"] == "commit")
    nodes = {k: v for k, v in every.items() if v["kind"] != "commit"}
    pairs = [
        (e["from"], e["to"]) for e in graph["edges"] if e["from"] in nodes and e["to"] in nodes
    ]
    layer = _layers(list(nodes), pairs)
    rows = []
    for node_id in commits + sorted(nodes, key=lambda n: (layer[n], n)):
        node = every[node_id]
        anchors = " · ".join(
            f'<a href="{escape(url)}">{escape(text)}</a>' for text, url in _links(node, links)
        )
        rows.append(
            f'<tr id="{escape(quote(node_id, safe=""))}"><td>{escape(node["kind"])}</td>'
            f"<td>{escape(str(node.get('label', '')))}</td>"
            f"<td><code>{escape(node_id)}</code></td><td>{anchors}</td></tr>"
        )
    heads = "".join(
        f"<p>code commit <code>{escape(c[7:])}</code> "
        + " ".join(f'<a href="{escape(u)}">{escape(t)}</a>' for t, u in _links(every[c], links))
        + "</p>"
        for c in commits
    )
    table = (
        '<table class="nodes"><tr><th>kind</th><th>name</th><th>node</th><th>links</th>'
        "</tr>" + "".join(rows) + "</table>"
    )
    return Parts(heads, _svg(run["id"], nodes, pairs, layer), table)
