"""The reference prompt optimizer behind ``agentmedic optimize-prompt``.

It runs in the prompt-optimization Job agentmedic starts when a rule asks for one: it
reads the agent's prompt from a ConfigMap key (:mod:`.store`), asks an OpenAI-compatible
model for a shorter version (:mod:`.model`), checks the candidate (:mod:`.checks`: every
placeholder and required line kept, shorter by a stated share, within size bounds), and
writes it as a new versioned key with its result (:mod:`.run`). The result contract is
:class:`agentmedic.api.prompt.PromptOptimizationResult`; docs/prompt-optimization.md says
how agentmedic reads it and rolls the candidate out.
"""

from agentmedic.optimize.checks import Limits, check_candidate, placeholders, required_lines
from agentmedic.optimize.model import ModelError, ModelSettings, ask_for_shorter
from agentmedic.optimize.run import OptimizeSettings, optimize

__all__ = [
    "Limits",
    "ModelError",
    "ModelSettings",
    "OptimizeSettings",
    "ask_for_shorter",
    "check_candidate",
    "optimize",
    "placeholders",
    "required_lines",
]
