"""`testtime serve`: test-time scaling behind an OpenAI-compatible chat-completions API.

The strategy, its parameters and the budget come with each request (a `testtime` object,
or a `STRATEGY@MODEL` model name); the answer comes back as a normal chat completion,
with the cost itemised in `usage.testtime`. Without a strategy the server is a plain
model server, so it can be another server's upstream.
"""

from testtime.server.app import create_app, serve
from testtime.server.settings import Settings

__all__ = ["Settings", "create_app", "serve"]
