"""The state machine drawn as a graph, each state coloured by how the execution went through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "caught": "#ef6c00",
    "running": "#1565c0",
    "not run": "#bdbdbd",
}


@dataclass
class StateRun:
    status: str = "not run"
    seconds: float = 0.0
    entries: int = 0
    error: str | None = None


@dataclass
class GraphModel:
    states: dict[str, dict[str, Any]]
    edges: list[tuple[str, str, str]]  # (from, to, kind: next|choice|catch|default)
    ranks: dict[str, int]
    runs: dict[str, StateRun] = field(default_factory=dict)


def _successors(state: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if "Next" in state:
        out.append((state["Next"], "next"))
    for choice in state.get("Choices", []):
        if "Next" in choice:
            out.append((choice["Next"], "choice"))
    if "Default" in state:
        out.append((state["Default"], "default"))
    for catcher in state.get("Catch", []):
        out.append((catcher["Next"], "catch"))
    return out


def build_graph(definition: dict[str, Any]) -> GraphModel:
    """Nodes, edges and a layered layout: rank = longest path from StartAt ignoring loop-back edges."""
    states: dict[str, dict[str, Any]] = definition["States"]
    edges = [(name, target, kind) for name, state in states.items() for target, kind in _successors(state)]
    order: list[str] = []
    back_edges: set[tuple[str, str]] = set()
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        visiting.add(name)
        for target, _ in _successors(states[name]):
            if target in visiting:
                back_edges.add((name, target))
            elif target not in done and target in states:
                visit(target)
        visiting.discard(name)
        done.add(name)
        order.append(name)

    visit(definition["StartAt"])
    for name in states:  # states reachable only oddly still get drawn
        if name not in done:
            visit(name)
    ranks = {name: 0 for name in states}
    for name in reversed(order):  # reverse post-order is a topological order of the DAG part
        for target, _kind in _successors(states[name]):
            if (name, target) in back_edges or target not in states:
                continue
            ranks[target] = max(ranks[target], ranks[name] + 1)
    return GraphModel(states=states, edges=edges, ranks=ranks)


def runs_from_history(events: list[dict[str, Any]]) -> dict[str, StateRun]:
    """Per state: status, total seconds and entry count, from GetExecutionHistory events in order.

    A failed attempt that a Retry then recovers leaves the state "succeeded"; a state left through a
    Catch is "caught"; the state the execution ended in, when it failed, is "failed"."""
    runs: dict[str, StateRun] = {}
    entered: dict[str, float] = {}
    pending_error: dict[str, str | None] = {}
    current: str | None = None
    last_seconds = 0.0
    for event in events:
        kind = str(event.get("type", ""))
        timestamp = event.get("timestamp")
        seconds = timestamp.timestamp() if isinstance(timestamp, datetime) else float(timestamp or 0)
        last_seconds = max(last_seconds, seconds)
        details = next(
            (v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {}
        )
        if kind.endswith("StateEntered"):
            name = details["name"]
            run = runs.setdefault(name, StateRun())
            run.entries += 1
            run.status = "running"
            entered[name] = seconds
            pending_error[name] = None
            current = name
        elif kind.endswith("StateExited"):
            name = details["name"]
            run = runs.setdefault(name, StateRun())
            run.seconds += max(0.0, seconds - entered.pop(name, seconds))
            error = pending_error.pop(name, None)
            run.status = "caught" if error else "succeeded"
            if error:
                run.error = error
        elif kind == "ExecutionSucceeded":
            if current is not None and runs[current].status == "running":
                runs[current].status = "succeeded"  # a Succeed state may end the run without an exit event
                entered.pop(current, None)
        elif kind in ("ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            if current is not None and runs[current].status == "running":
                runs[current].status = "failed"
                runs[current].error = pending_error.get(current) or details.get("error") or kind
        elif kind.endswith(("Failed", "TimedOut")) and current is not None:
            pending_error[current] = details.get("error") or kind
        elif kind.endswith("Succeeded") and current is not None:
            pending_error[current] = None  # a retry recovered
    for name, started in entered.items():  # still running: time so far
        runs[name].seconds += max(0.0, last_seconds - started)
    return runs


def draw_figure(model: GraphModel, title: str = "Pipeline") -> Figure:
    """The graph as a Figure: boxes in rank rows, arrows between them, colours from the runs."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Patch

    by_rank: dict[int, list[str]] = {}
    for name, rank in sorted(
        model.ranks.items(), key=lambda item: (item[1], list(model.states).index(item[0]))
    ):
        by_rank.setdefault(rank, []).append(name)
    width = max(len(names) for names in by_rank.values())
    positions: dict[str, tuple[float, float]] = {}
    for rank, names in by_rank.items():
        for index, name in enumerate(names):
            positions[name] = (index - (len(names) - 1) / 2, -rank)
    figure = Figure(figsize=(max(7.0, 3.2 * width), 0.8 * len(by_rank) + 1.4))
    axes = figure.subplots()
    for source, target, kind in model.edges:
        if source not in positions or target not in positions:
            continue
        # Every Task catches to the same handler; drawing all those edges hides the flow, so only the
        # Catch an execution actually took is drawn.
        if kind == "catch" and model.runs.get(source, StateRun()).status != "caught":
            continue
        (x1, y1), (x2, y2) = positions[source], positions[target]
        style = {"catch": ("#9e9e9e", "--"), "choice": ("#455a64", "-"), "default": ("#455a64", ":")}.get(
            kind, ("#263238", "-")
        )
        bend = 0.35 if y2 >= y1 else 0.0  # loop-back edges arc around
        axes.annotate(
            "",
            xy=(x2, y2 + 0.22),
            xytext=(x1, y1 - 0.22),
            arrowprops={
                "arrowstyle": "->",
                "color": style[0],
                "linestyle": style[1],
                "connectionstyle": f"arc3,rad={bend}",
                "lw": 1.1,
            },
        )
    for name, (x, y) in positions.items():
        run = model.runs.get(name, StateRun())
        colour = STATUS_COLOURS[run.status]
        box = FancyBboxPatch(
            (x - 0.42, y - 0.2), 0.84, 0.4, boxstyle="round,pad=0.02", facecolor=colour, edgecolor="#263238"
        )
        axes.add_patch(box)
        label = f"{name}\n{model.states[name].get('Type', '')}"
        if run.entries:
            label += f" · {_duration(run.seconds)}" + (f" x{run.entries}" if run.entries > 1 else "")
        if run.error and run.status in ("failed", "caught"):
            label += f"\n{run.error[:28]}"
        text_colour = "white" if run.status != "not run" else "#212121"
        axes.text(x, y, label, ha="center", va="center", fontsize=8, color=text_colour)
    axes.set_xlim(-width / 2 - 0.2, width / 2 + 0.2)
    axes.set_ylim(-len(by_rank) + 0.4, 0.6)
    axes.set_axis_off()
    axes.set_title(f"{title}\n(Catch edges, dashed, drawn only where taken)", fontsize=11)
    axes.legend(
        handles=[Patch(color=c, label=s) for s, c in STATUS_COLOURS.items()],
        loc="lower right",
        fontsize=7,
        frameon=False,
    )
    figure.tight_layout()
    return figure


def draw(model: GraphModel, path: str, title: str = "Pipeline") -> None:
    """Save the graph as a PNG."""
    draw_figure(model, title).savefig(path, dpi=110)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
