"""Target sets: rank-k generation, prompt-reconstruction sets, and readers for the reference formats."""

from softtoken.data.targets import RankKConfig, Target, TargetSet, generate_rank_k, load_targets

__all__ = ["RankKConfig", "Target", "TargetSet", "generate_rank_k", "load_targets"]
