"""Strategies: how compute is spent on one problem.

Importing this package registers every built-in strategy in `STRATEGIES`, one line each.
"""

from testtime.strategies import adaptive as adaptive
from testtime.strategies import beam as beam
from testtime.strategies import compute_optimal as compute_optimal
from testtime.strategies import deepconf as deepconf
from testtime.strategies import forcing as forcing
from testtime.strategies import fusion as fusion
from testtime.strategies import mcts as mcts
from testtime.strategies import parallel as parallel
from testtime.strategies import particle as particle
from testtime.strategies import rebase as rebase
from testtime.strategies import refine as refine
from testtime.strategies import tournament as tournament
from testtime.strategies import usc as usc
