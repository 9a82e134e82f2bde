"""The shapes of a benchmark run's results: typed rows, typed notes, and the run's result.

Rows stay plain dicts (they are written to and read from CSV as is) but have a declared type. The CSV
columns are the public contract; a compression row also carries its ``label`` (the CSV's ``method`` cell,
e.g. ``random-s1``) split into ``method`` and ``seed``, and a fidelity row its coloring's ``method`` and
``budget_fraction``, set where the row is made, so that the report and the plots read fields, never strings.
Labels are parsed in one place only, :func:`split_label`, when a finished run is read back from its CSVs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:  # typing.NotRequired is Python 3.11+; the annotations below stay strings at run time
    from typing import NotRequired

__all__ = ["SolverRow", "CompressionRow", "FidelityRow", "Note", "BenchResult", "split_label", "compression_row",
           "fidelity_row", "coloring_label"]


class SolverRow(TypedDict):
    instance: str
    n_layers: int
    backend: str
    time_limit: float
    objective: float | None
    bound: float | None
    gap: float | None
    status: str
    wall_time: float
    solver_time: NotRequired[float]  # the solver's own seconds (wall time less the graph's lazy work)


class CompressionRow(TypedDict):
    model: str
    label: str  # the CSV's "method" cell: the run's name, e.g. "random-s1", "optimal-layerwise"
    method: str  # what it is an instance of: "random", "optimal-layerwise", "svd-uniform", ...
    seed: int | None  # the random method's seed, else None
    budget_fraction: float
    stored_parameters: int
    surrogate: float
    metric: str
    value: float


class FidelityRow(TypedDict):
    model: str
    curvature: str
    coloring: str  # "<label>@<budget>" for a compression coloring, "random-partition-<k>" otherwise
    method: str  # the compression label, or "random-partition"
    budget_fraction: float | None  # the compression budget, None for a random partition
    predicted: float
    measured: float


def split_label(label: str) -> tuple[str, int | None]:
    """``random-s1`` -> (``random``, 1); any other label -> (label, None)."""
    if label.startswith("random-s") and label[len("random-s"):].isdigit():
        return "random", int(label[len("random-s"):])
    return label, None


def coloring_label(label: str, budget: float) -> str:
    """The name of a compression coloring in fidelity.csv: ``<label>@<budget>``."""
    return f"{label}@{budget:g}"


def compression_row(model: str, label: str, budget: float, stored: int, surrogate: float, metric: str,
                    value: float) -> CompressionRow:
    method, seed = split_label(label)
    return CompressionRow(model=model, label=label, method=method, seed=seed, budget_fraction=budget,
                          stored_parameters=stored, surrogate=surrogate, metric=metric, value=value)


def fidelity_row(model: str, curvature: str, coloring: str, predicted: float, measured: float) -> FidelityRow:
    label, sep, budget = coloring.rpartition("@")
    if sep:
        return FidelityRow(model=model, curvature=curvature, coloring=coloring, method=label,
                           budget_fraction=float(budget), predicted=predicted, measured=measured)
    return FidelityRow(model=model, curvature=curvature, coloring=coloring, method=coloring.rsplit("-", 1)[0],
                       budget_fraction=None, predicted=predicted, measured=measured)


NoteKind = Literal["layers", "solve", "warning", "info"]


@dataclass
class Note:
    """A remark of the run: ``layers`` (a model's target layers), ``solve`` (a method stopped early or found
    nothing), ``warning`` (caught from an estimator), ``info``."""

    kind: NoteKind
    text: str


@dataclass
class BenchResult:
    """Everything a run produced. Times in seconds."""

    started: str
    notes: list[Note] = field(default_factory=list)
    solvers: list[SolverRow] = field(default_factory=list)
    compression: list[CompressionRow] = field(default_factory=list)
    fidelity: list[FidelityRow] = field(default_factory=list)
    known: dict[str, Any] = field(default_factory=dict)  # instance -> published optimum or "infeasible"
    families: dict[str, str] = field(default_factory=dict)  # instance -> instance family
    agreement: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def note(self, kind: NoteKind, text: str) -> None:
        self.notes.append(Note(kind, text))

    def notes_of(self, *kinds: NoteKind) -> list[str]:
        return [n.text for n in self.notes if n.kind in kinds]
