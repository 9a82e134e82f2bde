"""Graph model, cost models and integer-program builders (numpy/scipy only)."""

from .clique import CliquePartition
from .costs import GroupCosts, MedoidCosts, Option, PairwiseCosts
from .graph import SharingClass, SharingGraph
from .pmedian import PMedian
from .program import IntegerProgram
from .setpart import SetPartition, enumerate_groups

__all__ = ["SharingGraph", "SharingClass", "Option", "MedoidCosts", "PairwiseCosts", "GroupCosts", "PMedian",
           "CliquePartition", "SetPartition", "IntegerProgram", "enumerate_groups"]
