"""Diffusion and flow models: samplers, noise search and FK steering, with NFE budgets.

Importing this package registers every diffusion strategy in `DIFFUSION_STRATEGIES`.
It needs torch (the `local` extra); the embedded digit model and the diffusers adapter
are in the `diffusion` extra.
"""

from testtime.diffusion import search as search
from testtime.diffusion import steering as steering
