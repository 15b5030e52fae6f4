"""The SPA method: the log-prob kernel (scoring, encoding), the formulas (formulas: judge reward, noise
detection, self-refinement loss), the judges (judges: implicit and gold; baseline_judges: density ratio, reward
model, LLM-as-judge), the DPOTrainer subclass (trainer), generation, models and evaluation. Knows nothing of jobs."""
from engine.method.formulas import (dpo_margin, extrapolated_logits, implicit_reward, judge_preference, noise_flags,
                                    self_refinement_loss, soft_labels)

__all__ = ["dpo_margin", "extrapolated_logits", "implicit_reward", "judge_preference", "noise_flags",
           "self_refinement_loss", "soft_labels"]
