"""The planner: a Track 2 spec -> a Plan (canvas, prompt, seed, composition targets, reasons).

Modules: `role` (the Planner and its Plan), `canvas_policy` (description -> canvas), `prompt_builder` (the
generation prompt and its token budget), `targets` (description -> CompositionTargets), `plan_keywords` (the
phrase matcher and the data files under prompts/planner/), `plan_fit` (offline fitting of a canvas policy to
train images; not a role).
"""

from portraitcraft.agents.planner.role import Plan, Planner, item_seed, policy_from_config

__all__ = ["Plan", "Planner", "item_seed", "policy_from_config"]
