"""Diffusion and flow models: samplers, noise search and FK steering, with NFE budgets.

Importing this package registers every diffusion strategy in `DIFFUSION_STRATEGIES`.
It needs torch (the `local` extra); the embedded digit model and the diffusers adapter
are in the `diffusion` extra. As for the LLM engine, OpenMP threads wait passively unless
the environment says otherwise: spinning threads slow CPU work 50-100x whenever another
process competes for a core (measured here: a tiny UNet call, 3.8 s spinning vs 0.01 s).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is first imported

from testtime.diffusion import search as search
from testtime.diffusion import steering as steering
