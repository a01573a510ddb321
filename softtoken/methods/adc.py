"""ADC: adaptive dense-to-sparse relaxation of a discrete prompt (after Hu et al. 2024, "Efficient LLM Jailbreak
via Adaptive Dense-to-sparse Constrained Optimization", NeurIPS 2024).

The prompt is B relaxed prompts X (B x L x V), every row a point of the probability simplex over the prompt
vocabulary, started dense at softmax(N(0, 1) logits). Each step takes the teacher-forced target loss of X
(the mixture X @ W_emb is fed as the prompt), makes an SGD-with-momentum step on X (lr 10, momentum 0.99 as
in ADC), then projects every row back: negatives are clamped to 0, only the row's top-s entries are kept and
the row is renormalised to sum 1. The support size s is adaptive per prompt: with w of the T teacher-forced
target tokens wrong at this step, s = round(s_max ** (w / T)), geometric from s_max (all wrong) to exactly 1
(none wrong). So a prompt whose relaxation gets the target right becomes one-hot, that is discrete; the
forward of an all-one-hot prompt is a discrete forward, and its teacher-forced match is an exact greedy
match (confirmed by the shared judge, which also judges argmax X of the lowest-loss prompt every
`eval_every` steps; with `support_samples`, the best of that many discrete prompts drawn from its rows).
With `polish_width`, a discrete lowest-loss prompt with few wrong target tokens also gets a GCG step from the
gradient already taken: its best-scoring single swap replaces it when that lowers the loss. With
`round_samples`, relaxed prompts near the target also have discrete prompts drawn from their rows, and a draw
within `polish_wrong` wrong tokens replaces its prompt for the polish (off: it lost on the natural set). With
`share_every`, the prompt with the worst recent losses periodically restarts from the best prompt's point. With
`prune_every`, the batch keeps its lowest-loss half every that many steps, down to `prune_to` prompts. With
`chain_width`, the lowest-loss prompt also carries a discrete chain that its rows and gradient propose swaps to
and whose scored winner pulls its rows (the relaxation interleaved with a discrete search).

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = ADC(adc_default()).run(problem, Budget(steps=500))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from softtoken.configcheck import check_types
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.lm.softlm import SoftLM
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.candidates import (lowest_estimate_swaps, sample_candidates, sample_row_swaps, score_candidates,
                                         token_swaps)
from softtoken.methods.harness import ConfiguredMethod, RunHarness
from softtoken.methods.starts import prompt_indices, target_rotations
from softtoken.objectives import ObjectiveContext, TargetCE
from softtoken.objectives.target import REDUCTIONS, TOKEN_LOSSES
from softtoken.relax import simplex_start


@dataclass(frozen=True, kw_only=True)
class ADCConfig:
    """SGD settings are ADC's (lr 10, momentum 0.99); the support schedule is geometric in the wrong tokens."""

    epochs: int = 2000  # optimiser steps, >= 1
    batch_size: int = 4  # B relaxed prompts optimised in parallel (independent starts), >= 1
    learning_rate: float = 10.0  # SGD lr, > 0 (ADC's; gradients w.r.t. simplex entries are small)
    momentum: float = 0.99  # SGD momentum, in [0, 1)
    support_max: int = 100  # s_max: entries kept per row when every target token is wrong, >= 1 (capped at V)
    init_std: float = 1.0  # std of the N(0, std^2) logits whose softmax is the start, >= 0 (0: uniform)
    target_starts: int = 0  # of the B prompts, how many start at the target's lowest-loss rotations, in [0, B]
    target_mass: float = 0.5  # probability those starts put on the rotation's token per position, in (0, 1]
    eval_every: int = 10  # steps between greedy evaluations of argmax X of the lowest-loss prompt, >= 1
    support_samples: int = 0  # at each evaluation also score this many discrete prompts drawn from that
    # prompt's rows (token ~ X) and judge the best of them; 0: judge argmax X only
    # A discrete polish (issue 12): when the lowest-loss prompt is discrete (all rows one-hot) with at most
    # `polish_wrong` wrong target tokens, also score `polish_width` of its single-token swaps, drawn from the
    # top-`polish_topk` tokens of the gradient this step already took (a GCG step), and move that prompt to
    # the best swap when it lowers the loss. 0: off.
    polish_width: int = 0  # swaps scored per polish, >= 0
    polish_topk: int = 32  # tokens per position the swaps are drawn from, >= 1
    polish_wrong: int | None = 1  # polish only with at most this many wrong target tokens, >= 0; None: the count
    # at which rows turn one-hot, the largest w with round(s_max ** (w / T)) = 1 (1 at T = 10, 3 at T = 20)
    polish_any: bool = False  # polish the lowest-loss of the discrete prompts with few wrong tokens, even when a
    # relaxed prompt has a lower loss (a mixture's loss is usually below any discrete prompt's)
    # Rounding (issue 12): a relaxed prompt whose mixture gets all but a few target tokens right holds, among the
    # discrete prompts drawn from its rows, some much nearer the target than its argmax. Each step, every relaxed
    # prompt with at most `round_wrong` wrong target tokens has `round_samples` discrete prompts drawn from its
    # rows (token ~ X, one scoring pass for all); an exact draw is a hit, and otherwise the best draw with at
    # most `polish_wrong` wrong tokens replaces its prompt, one-hot, for the polish to finish. 0: off.
    round_samples: int = 0  # draws per eligible prompt and step, >= 0
    round_wrong: int = 3  # draw only from prompts with at most this many wrong target tokens, >= 0
    # Sharing (issue 12): the B prompts are otherwise independent starts. Every `share_every` steps the prompt
    # with the highest mean loss over those steps restarts from the lowest-loss prompt's current point, with
    # its momentum cleared (so the copy leaves along its own path under momentum 0.99). 0: off.
    share_every: int = 0  # steps between shares, >= 0
    # Pruning (issue 12): start many prompts, then spend the steps on the promising ones. Every `prune_every`
    # steps the batch keeps its ceil(B / 2) lowest-loss prompts (with their momentum, and the lr scaled so that
    # each keeps its own step) until `prune_to` are left; a smaller batch makes cheaper steps. 0: off.
    prune_every: int = 0  # steps between halvings, >= 0
    prune_to: int = 1  # the batch size at which pruning stops, in [1, batch_size]
    # A fluency prior (issue 12): the natural targets continue natural openings, so the gradient step also lowers
    # the prompt's own expected NLL under the model, weighted by this (read from the loss pass's forward: the LM
    # head at L-1 more positions). Only the gradient sees it; losses, the polish and the judge stay the target's.
    fluency_weight: float = 0.0  # >= 0; 0: off
    fluency_prompts: int | None = None  # how many of the B prompts (the first) carry the prior, in [0, B]; None: all.
    # A batch of mixed priors: the prior changes which targets a run reaches, not how many (screen 23).
    # Balanced rows (issue 12): one or two of a prompt's positions take gradients several times its others' (in
    # `adc-polish` runs most rows' norms are 0.15-0.5 of the prompt's largest: bench/screens/row_gradients.py), so
    # under one lr some positions barely move. With this on, each row's gradient is rescaled to its prompt's mean
    # row norm before the step: every position moves at one rate, and a prompt's step keeps its size. Per-row
    # top-k (the polish) is unchanged. Negative against the preset run beside it, though it reached natural_15 once
    # (screen 25).
    balance_rows: bool = False
    # A discrete chain interleaved with the relaxation (issue 12: the relaxation proposes the candidates each step
    # and is updated by the scored winners). The lowest-loss prompt of a step that is not polished carries a
    # discrete chain (started at its argmax): `chain_width` single swaps of the chain, half drawn from the prompt's
    # relaxed rows and half from the top-`polish_topk` of the step's gradient, are scored beside the chain and the
    # prompt's argmax; the chain moves to the lowest loss (an exact one is a hit), and the prompt's rows are pulled
    # toward it, X <- (1 - `chain_pull`) X + `chain_pull` one_hot(chain). Only every `chain_every` steps (a chain
    # step of 16 swaps costs 1.4-1.5 ADC steps on a CPU) and while the prompt has at most `chain_wrong` wrong target
    # tokens (None: always). Below the preset on the hard natural targets (docs/benchmarks.md §6). 0: off.
    chain_width: int = 0  # swaps scored per chain step, >= 0
    chain_every: int = 1  # steps between chain steps, >= 1
    chain_wrong: int | None = None  # >= 0
    chain_pull: float = 0.5  # in [0, 1]
    # Copy swaps (issue 12): the model copies from its context (digits, names, code), and on ADC's near misses a
    # single swap to one of the target's own tokens lowers the wrong count as often as a swap from the gradient's
    # top-k (docs/benchmarks.md §6). With this on, each discrete prompt of the batch with at most `polish_wrong`
    # wrong target tokens has all its swaps to a target token (at most L * T) scored, once per distinct prompt: an
    # exact one is a hit, and otherwise the lowest-loss one replaces the prompt when it is lower, as in the polish
    # (with `copy_exact_only`, never: the checks then leave ADC's path as it was, bar their time). `copy_wrong` set:
    # every prompt with at most that many wrong target tokens under the step's forward, discrete or not (a relaxed
    # one's argmax is what is scored), since most of the preset's misses never hold a discrete near miss. Below
    # `adc-copy` on the hard natural targets: the scoring took three quarters of the steps (docs/benchmarks.md §6).
    # `copy_width`: score only that many of a prompt's copy swaps, those the step's gradient ranks first (the
    # one-hot gradient's first-order loss change, as GCG ranks tokens): at T = 20, L = 20 a prompt has up to 400
    # copy swaps, and a run that scores them all often makes a third of the steps (docs/benchmarks.md §6).
    copy_swaps: bool = False
    copy_exact_only: bool = False
    copy_wrong: int | None = None  # >= 0, needs copy_swaps; None: the polish's rule above
    copy_width: int | None = None  # >= 1, needs copy_swaps; None: every copy swap
    loss: str = "crossentropy"  # per target token: crossentropy (ADC's) or margin (max_v log p(v) - log p(y_t))
    loss_reduction: str = "mean"  # over target positions: mean, or mellowmax (weights the worst tokens up)
    compute_dtype: str = "float32"  # forward/backward under autocast; the judge stays float32
    compile_model: bool = False  # the loss's decoder layers through torch.compile (a C++ compiler; the first
    # step of a process pays the compile, seconds from inductor's disk cache after the first process)

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "batch_size", "learning_rate", "support_max", "eval_every", "polish_topk",
                     "chain_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ADCConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"ADCConfig.momentum must be in [0, 1), got {self.momentum}")
        if not self.fluency_weight >= 0:
            raise ValueError(f"ADCConfig.fluency_weight must be >= 0, got {self.fluency_weight}")
        if self.fluency_prompts is not None and not 0 <= self.fluency_prompts <= self.batch_size:
            raise ValueError(f"ADCConfig.fluency_prompts must be in [0, batch_size={self.batch_size}] or None, "
                             f"got {self.fluency_prompts}")
        if not 0 <= self.chain_pull <= 1:
            raise ValueError(f"ADCConfig.chain_pull must be in [0, 1], got {self.chain_pull}")
        if not self.init_std >= 0:
            raise ValueError(f"ADCConfig.init_std must be >= 0, got {self.init_std}")
        for name in ("support_samples", "polish_width", "polish_wrong", "round_samples", "round_wrong", "share_every",
                     "prune_every", "chain_width", "chain_wrong", "copy_wrong"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"ADCConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("copy_wrong", "copy_width"):
            if getattr(self, name) is not None and not self.copy_swaps:
                raise ValueError(f"ADCConfig.{name} needs copy_swaps: true, got {name}={getattr(self, name)}")
        if self.copy_width is not None and not self.copy_width >= 1:
            raise ValueError(f"ADCConfig.copy_width must be >= 1 or None, got {self.copy_width}")
        if not 0 <= self.target_starts <= self.batch_size:
            raise ValueError(f"ADCConfig.target_starts must be in [0, batch_size={self.batch_size}], "
                             f"got {self.target_starts}")
        if not 1 <= self.prune_to <= self.batch_size:
            raise ValueError(f"ADCConfig.prune_to must be in [1, batch_size={self.batch_size}], got {self.prune_to}")
        if not 0 < self.target_mass <= 1:
            raise ValueError(f"ADCConfig.target_mass must be in (0, 1], got {self.target_mass}")
        choices = {"compute_dtype": COMPUTE_DTYPES, "loss": tuple(sorted(TOKEN_LOSSES)), "loss_reduction": REDUCTIONS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"ADCConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")

    @property
    def fluency_on(self) -> bool:
        """Whether some prompt carries the fluency prior (a positive weight on at least one prompt)."""
        return self.fluency_weight > 0 and self.fluency_prompts != 0

    def polish_wrong_for(self, target_length: int) -> int:
        """`polish_wrong`, or with None the largest wrong count w at which support_size gives one-hot rows."""
        if self.polish_wrong is not None:
            return self.polish_wrong
        sizes = support_size(torch.arange(target_length + 1), target_length, self.support_max)  # (T + 1,)
        return int((sizes == 1).sum()) - 1


@dataclass(frozen=True)
class DiscreteChains:
    """Each relaxed prompt's discrete chain (`chain_width`): its prompt (B, L) and loss (B,), inf until started."""

    prompts: torch.Tensor
    losses: torch.Tensor

    @classmethod
    def unstarted(cls, batch: int, length: int, device: torch.device) -> DiscreteChains:
        return cls(torch.zeros(batch, length, dtype=torch.long, device=device),
                   torch.full((batch,), torch.inf, device=device))

    def kept(self, keep: torch.Tensor) -> DiscreteChains:
        """The chains of the prompts `keep` (K,) (batch indices) that pruning kept, in their order."""
        return DiscreteChains(self.prompts[keep], self.losses[keep])


def support_size(wrong: torch.Tensor, target_length: int, support_max: int) -> torch.Tensor:
    """Entries kept per row, per prompt: wrong (B,) counts in 0..T -> s (B,) long, s = round(s_max ** (w / T)).

    s_max at w = T, exactly 1 at w = 0 (s_max ** 0), and geometric in between: each wrong token multiplies
    the support by s_max ** (1 / T), so the relaxation tightens fastest as the last tokens come right."""
    exponent = wrong.to(torch.float64) / target_length  # (B,)
    return torch.round(float(support_max) ** exponent).clamp_min(1).long()


def project_top_s(x: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Project rows of x (B, L, V) onto sparse simplex points, s = support[b] (B,) entries per row of prompt b.

    Negatives are clamped to 0, each row keeps its s largest entries and is renormalised to sum 1; a row
    with no positive entry kept becomes one-hot at its argmax. s = 1 gives one-hot rows."""
    vocab = x.shape[-1]
    clamped = x.clamp_min(0)  # (B, L, V)
    kept_count = int(min(int(support.max()), vocab))
    values, index = clamped.topk(kept_count, dim=-1)  # (B, L, k)
    keep = torch.arange(kept_count, device=x.device) < support.view(-1, 1, 1)  # (B, 1, k)
    kept = torch.zeros_like(x).scatter_(-1, index, values * keep)  # (B, L, V)
    mass = kept.sum(-1, keepdim=True)  # (B, L, 1)
    one_hot = F.one_hot(x.argmax(-1), vocab).to(x.dtype)  # (B, L, V)
    return torch.where(mass > 0, kept / mass.clamp_min(torch.finfo(x.dtype).tiny), one_hot)


def balance_rows_(grad: torch.Tensor) -> None:
    """Rescale in place each row of grad (B, L, V) to its prompt's mean row norm: directions kept, every row of a
    prompt the same length. A zero row stays zero (and counts in the mean), so without one the prompt's summed row
    norms are unchanged."""
    norms = grad.norm(dim=-1, keepdim=True)  # (B, L, 1)
    grad.mul_(norms.mean(1, keepdim=True) / norms.clamp_min(torch.finfo(grad.dtype).tiny))


def draw_discrete(rows: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` discrete prompts drawn from the rows (L, V) of one relaxed prompt (token ~ row at each
    position), duplicates dropped: (M, L), M <= count, sorted."""
    return torch.multinomial(rows, count, replacement=True, generator=generator).T.unique(dim=0)


def is_one_hot(x: torch.Tensor) -> torch.Tensor:
    """(B,) True where every row of x (B, L, V) holds exactly one nonzero entry (then it is 1: rows sum to 1)."""
    return ((x != 0).sum(-1) == 1).all(-1)


@register_method("adc")
class ADC(ConfiguredMethod):
    """ADC-style relaxation: momentum SGD on simplex rows, projected to an adaptive top-s support each step."""

    name = "adc"
    config_class = ADCConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise X until exact match or the budget; return the best discrete prompt judged."""
        if self.config.fluency_on and problem.prompt_length < 2:
            raise ValueError(f"ADCConfig.fluency_weight needs a prompt of >= 2 tokens (the first token has no "
                             f"prediction to score), got prompt_length={problem.prompt_length}")
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        objective = TargetCE(token_loss=cfg.loss, reduction=cfg.loss_reduction)
        target = run.context.target_tensor(lm.device)  # (T,)
        polish_wrong = cfg.polish_wrong_for(int(target.numel()))
        relaxed = self._start(run, objective, problem.prompt_length)  # (B, L, V)
        optimizer = torch.optim.SGD([relaxed], lr=cfg.learning_rate, momentum=cfg.momentum)
        best_prompt = relaxed[0].detach().argmax(-1)  # (L,)
        window_loss = torch.zeros(cfg.batch_size, device=lm.device)  # (B,) summed since the last share
        prior = self._prior_weights(lm.device)  # (B,) each prompt's fluency weight
        chains = DiscreteChains.unstarted(cfg.batch_size, problem.prompt_length, lm.device)
        copy_tokens = prompt_indices(lm, problem.target_ids).unique() if cfg.copy_swaps else None  # (K,)
        copied: set[tuple[int, ...]] = set()  # the prompts whose copy swaps were scored
        for step in run.steps():
            with lm.compute(cfg.compute_dtype, compiled=cfg.compile_model):
                losses, predictions, fluency = self._losses(objective, lm, relaxed, run.context)  # (B,), (B, T), (B,)
            loss = losses.mean()
            descended = loss if fluency is None else loss + (prior * fluency).mean()
            if not torch.isfinite(descended):
                raise NonFiniteLossError(f"ADC loss is {descended.item()} at step {step}; lower learning_rate")
            # Before the update: the prompts this forward saw, and which of them were discrete.
            prompts, discrete = relaxed.detach().argmax(-1), is_one_hot(relaxed.detach())  # (B, L), (B,)
            hits = discrete & (predictions == target).all(-1)  # (B,)
            wrong = (predictions != target).sum(-1)  # (B,)
            rounded, round_hits = self._round(run, objective, relaxed.detach(), ~discrete & (wrong <= cfg.round_wrong),
                                              polish_wrong)  # (B, L), (B,)
            prompts, hits = torch.where(round_hits[:, None], rounded, prompts), hits | round_hits
            rounded_any = (rounded >= 0).all(-1)  # (B,)
            handed = (rounded_any & ~round_hits).nonzero().flatten()  # (K,) near misses for the polish
            optimizer.zero_grad(set_to_none=True)
            descended.backward()
            if cfg.balance_rows:
                balance_rows_(relaxed.grad)
            optimizer.step()
            support = support_size(wrong, int(target.numel()), cfg.support_max)  # (B,)
            with torch.no_grad():
                relaxed.copy_(project_top_s(relaxed, support))
                self._make_discrete(optimizer, relaxed, handed, rounded[handed])
            shared = False
            if cfg.share_every:  # the window is kept only when sharing is on: no work in the preset's loop
                window_loss += losses.detach()
                if step % cfg.share_every == 0:
                    shared = self._share(optimizer, relaxed, window_loss, losses.detach())
            best = int(losses.detach().argmin())
            best_prompt = prompts[best]  # (L,)
            chosen = self._polish_choice(losses.detach(), discrete & (wrong <= polish_wrong), best)
            polished = chosen is not None
            chained = not polished and self._chain_due(step, int(wrong[best]))
            if polished:
                hits = hits | self._polish(run, objective, optimizer, relaxed, chosen, prompts, losses[chosen].item())
            elif chained:
                hits = hits | self._chain_step(run, objective, relaxed, best, prompts, chains)
            if cfg.copy_swaps:
                eligible = self._copy_eligible(discrete, wrong, polish_wrong) & ~hits
                if polished:  # its loss is stale until the next step
                    eligible[chosen] = False
                hits = hits | self._copy_swaps(run, objective, optimizer, relaxed, prompts, losses.detach(), eligible,
                                               copy_tokens, copied)
            run.log({"loss/target": loss.item(), "loss/target_best": losses.min().item(),
                     "relax/support_mean": support.float().mean().item(),
                     **self._optional_logs(fluency, polished, chained, rounded_any, shared, relaxed.shape[0],
                                           len(copied))})
            if hits.any():
                run.evaluate_many(prompts[hits])
            elif step % cfg.eval_every == 0 or step == run.max_steps:
                run.evaluate_many(self._decoded(run, objective, best_prompt, relaxed.detach()[best]))
            if cfg.prune_every and step % cfg.prune_every == 0 and relaxed.shape[0] > cfg.prune_to:
                relaxed, optimizer, keep = self._halve(optimizer, relaxed, losses.detach())
                window_loss, prior, chains = window_loss[keep], prior[keep], chains.kept(keep)
        return run.result(self.name, cfg, final=best_prompt, objective=objective)

    def _start(self, run: RunHarness, objective: TargetCE, prompt_length: int) -> torch.Tensor:
        """The B relaxed prompts (B, L, V) to descend from, a leaf that requires grad."""
        cfg, lm = self.config, run.lm
        shape = (cfg.batch_size, prompt_length, lm.prompt_vocab_size)
        start = simplex_start(shape, std=cfg.init_std, generator=run.generator, device=lm.device)  # (B, L, V)
        return self._with_target_starts(run, objective, start).requires_grad_(True)

    def _optional_logs(self, fluency: torch.Tensor | None, polished: bool, chained: bool, rounded: torch.Tensor,
                       shared: bool, batch: int, copied: int) -> dict[str, float]:
        """The history keys of the options that are on; the presets' histories keep only the common keys."""
        cfg = self.config
        return {**({"loss/fluency": fluency.mean().item()} if fluency is not None else {}),
                **({"relax/polished": float(polished)} if cfg.polish_width else {}),
                **({"relax/chained": float(chained)} if cfg.chain_width else {}),
                **({"relax/copied": float(copied)} if cfg.copy_swaps else {}),
                **({"relax/rounded": float(rounded.sum())} if cfg.round_samples else {}),
                **({"relax/shared": float(shared)} if cfg.share_every else {}),
                **({"relax/batch": float(batch)} if cfg.prune_every else {})}

    def _losses(self, objective: TargetCE, lm: SoftLM, relaxed: torch.Tensor,
                context: ObjectiveContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The target loss (B,) and predictions (B, T) of relaxed (B, L, V), and its fluency (B,) when the
        config weights it (None otherwise: the preset's pass keeps the LM head at the target only)."""
        if not self.config.fluency_on:
            return (*objective.loss_and_predictions(lm, relaxed, context), None)
        return objective.loss_predictions_and_fluency(lm, relaxed, context)

    def _polish_choice(self, losses: torch.Tensor, eligible: torch.Tensor, best: int) -> int | None:
        """The prompt to polish this step, of losses (B,) and eligible (B,) (discrete, few wrong tokens): the
        lowest-loss prompt when eligible, or with `polish_any` the lowest-loss eligible one; None: no polish."""
        if self.config.polish_width == 0 or not eligible.any():
            return None
        if not self.config.polish_any:
            return best if bool(eligible[best]) else None
        return int(torch.where(eligible, losses, torch.inf).argmin())

    def _polish(self, run: RunHarness, objective: TargetCE, optimizer: torch.optim.SGD, relaxed: torch.Tensor,
                best: int, prompts: torch.Tensor, loss: float) -> torch.Tensor:
        """Score `polish_width` single swaps of the discrete prompt `best` (prompts (B, L)) drawn from its
        gradient (still in relaxed.grad); the best one replaces that prompt, one-hot and with its momentum
        cleared, when it beats the prompt's `loss`. Returns hits (B,) on `prompts`: a teacher-forced exact
        swap is written into `prompts[best]`, so the step's judge confirms it. Only discrete prompts: from a
        relaxed one, the argmax's swaps rarely beat the relaxed loss and cost ~3 steps each (screen 12)."""
        cfg, current = self.config, prompts[best]  # (L,)
        candidates = sample_candidates(current, relaxed.grad[best], search_width=cfg.polish_width,
                                       topk=cfg.polish_topk, n_replace=1, generator=run.generator,
                                       distinct=True)  # (N, L)
        losses, exact = score_candidates(run, objective, candidates, current, batch_size=64, prefix_cache=True,
                                         compute_dtype=cfg.compute_dtype)  # (N,), (N,)
        hits = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
        hits[best] = self._take_best_swap(optimizer, relaxed, best, prompts, candidates, losses, exact, loss)
        return hits

    def _copy_eligible(self, discrete: torch.Tensor, wrong: torch.Tensor, polish_wrong: int) -> torch.Tensor:
        """Which prompts (B,) get copy swaps, from whether each is `discrete` (B,) and its `wrong` (B,) count."""
        if self.config.copy_wrong is None:
            return discrete & (wrong <= polish_wrong)
        return wrong <= self.config.copy_wrong

    def _copy_swaps(self, run: RunHarness, objective: TargetCE, optimizer: torch.optim.SGD, relaxed: torch.Tensor,
                    prompts: torch.Tensor, losses: torch.Tensor, eligible: torch.Tensor, tokens: torch.Tensor,
                    copied: set[tuple[int, ...]]) -> torch.Tensor:
        """Score the swaps to the target's `tokens` (K,) of each `eligible` (B,) prompt of `prompts` (B, L) that is
        not in `copied` (the prompts already tried; grown here; with `copy_width`, only the swaps the gradient still
        in relaxed.grad ranks first), each taken as in the polish against its loss in `losses` (B,). Returns hits
        (B,) on `prompts`, so the step's judge confirms them."""
        hits = torch.zeros_like(eligible)
        for b in eligible.nonzero().flatten().tolist():
            key = tuple(prompts[b].tolist())
            if key in copied:
                continue
            copied.add(key)
            candidates = token_swaps(prompts[b], tokens)  # (N, L)
            if self.config.copy_width is not None:
                candidates = lowest_estimate_swaps(prompts[b], candidates, relaxed.grad[b], self.config.copy_width)
            if candidates.shape[0] == 0:
                continue
            scores, exact = score_candidates(run, objective, candidates, prompts[b], batch_size=64, prefix_cache=True,
                                             compute_dtype=self.config.compute_dtype)  # (N,), (N,)
            below = -torch.inf if self.config.copy_exact_only else losses[b].item()  # what a non-exact swap must beat
            hits[b] = self._take_best_swap(optimizer, relaxed, b, prompts, candidates, scores, exact, below)
        return hits

    def _take_best_swap(self, optimizer: torch.optim.SGD, relaxed: torch.Tensor, which: int, prompts: torch.Tensor,
                        candidates: torch.Tensor, scores: torch.Tensor, exact: torch.Tensor, loss: float) -> bool:
        """Move prompt `which` (of prompts (B, L) and relaxed) to the first exact candidate (N, L), or else to the
        lowest of `scores` (N,) when it is below `loss`: written into `prompts`, one-hot, momentum cleared.
        Returns whether it moved to an exact one (a hit)."""
        winner = int(exact.nonzero()[0, 0]) if exact.any() else int(scores.argmin())
        if not (exact.any() or scores[winner].item() < loss):
            return False
        with torch.no_grad():
            self._make_discrete(optimizer, relaxed, torch.tensor([which]), candidates[winner][None])
        prompts[which] = candidates[winner]
        return bool(exact[winner])

    def _chain_due(self, step: int, wrong: int) -> bool:
        """Whether step `step`'s lowest-loss prompt, with `wrong` wrong target tokens and no polish, takes a chain
        step."""
        cfg = self.config
        near = cfg.chain_wrong is None or wrong <= cfg.chain_wrong
        return cfg.chain_width > 0 and step % cfg.chain_every == 0 and near

    def _chain_step(self, run: RunHarness, objective: TargetCE, relaxed: torch.Tensor, best: int, prompts: torch.Tensor,
                    chains: DiscreteChains) -> torch.Tensor:
        """One step of the discrete chain of prompt `best` (prompts (B, L): the step's argmaxes): its swaps from
        the rows and from the gradient (still in relaxed.grad) are scored with the chain and the argmax, the chain
        moves to the lowest loss and the rows are pulled toward it. Returns hits (B,) on `prompts`: an exact chain
        prompt is written into `prompts[best]`, so the step's judge confirms it."""
        cfg, vocab = self.config, relaxed.shape[-1]
        current = chains.prompts[best] if bool(chains.losses[best].isfinite()) else prompts[best]  # (L,)
        half = cfg.chain_width // 2
        candidates = torch.cat([current[None], prompts[best][None],
                                sample_row_swaps(current, relaxed.detach()[best], cfg.chain_width - half,
                                                 run.generator),
                                sample_candidates(current, relaxed.grad[best], search_width=half, topk=cfg.polish_topk,
                                                  n_replace=1, generator=run.generator, distinct=True)]).unique(dim=0)
        losses, exact = score_candidates(run, objective, candidates, current, batch_size=64, prefix_cache=True,
                                         compute_dtype=cfg.compute_dtype)  # (N,), (N,)
        hits = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
        winner = int(exact.nonzero()[0, 0]) if exact.any() else int(losses.argmin())
        if not torch.isfinite(losses[winner]):  # the deadline came before any chunk was scored
            return hits
        chains.prompts[best], chains.losses[best] = candidates[winner], losses[winner]
        with torch.no_grad():
            pulled = F.one_hot(candidates[winner], vocab).to(relaxed.dtype)  # (L, V)
            relaxed[best] = (1 - cfg.chain_pull) * relaxed[best] + cfg.chain_pull * pulled
        if exact[winner]:
            prompts[best], hits[best] = candidates[winner], True
        return hits

    @staticmethod
    def _make_discrete(optimizer: torch.optim.SGD, relaxed: torch.Tensor, which: torch.Tensor,
                       prompts: torch.Tensor) -> None:
        """Set the relaxed prompts `which` (K,) (batch indices) one-hot at `prompts` (K, L) and clear their
        momentum, so the next step starts from that discrete prompt rather than coasting back to where it was."""
        if which.numel() == 0:
            return
        relaxed[which] = F.one_hot(prompts, relaxed.shape[-1]).to(relaxed.dtype)
        ADC._clear_momentum(optimizer, relaxed, which)

    @staticmethod
    def _clear_momentum(optimizer: torch.optim.SGD, relaxed: torch.Tensor, which: torch.Tensor | int) -> None:
        """Zero the SGD momentum of the relaxed prompts `which` (batch indices); none exists without momentum."""
        momentum = optimizer.state[relaxed].get("momentum_buffer")
        if momentum is not None:
            momentum[which] = 0

    @staticmethod
    def _share(optimizer: torch.optim.SGD, relaxed: torch.Tensor, window_loss: torch.Tensor,
               losses: torch.Tensor) -> bool:
        """Restart the prompt of highest `window_loss` (B,) (summed over the steps since the last share, so a
        lucky step does not save it) from the current point of the step's lowest-loss prompt (losses (B,)),
        momentum cleared; then reset the window. Returns whether a prompt moved (not when the two are one)."""
        worst, best = int(window_loss.argmax()), int(losses.argmin())
        window_loss.zero_()
        if worst == best:
            return False
        with torch.no_grad():
            relaxed[worst] = relaxed[best]
        ADC._clear_momentum(optimizer, relaxed, worst)
        return True

    def _prior_weights(self, device: torch.device) -> torch.Tensor:
        """(B,): `fluency_weight` for the first `fluency_prompts` prompts (all with None), 0 for the rest."""
        cfg = self.config
        count = cfg.batch_size if cfg.fluency_prompts is None else cfg.fluency_prompts
        return torch.where(torch.arange(cfg.batch_size, device=device) < count, cfg.fluency_weight, 0.0)

    def _halve(self, optimizer: torch.optim.SGD, relaxed: torch.Tensor,
               losses: torch.Tensor) -> tuple[torch.Tensor, torch.optim.SGD, torch.Tensor]:
        """Keep the max(ceil(B / 2), prune_to) lowest-loss prompts of relaxed (B, L, V) (losses (B,) from this
        step), in their order, with their momentum; returns them, their optimiser and which were kept (K,), for
        the caller's per-prompt state (share window, prior). The loss is the batch's mean, so a kept
        prompt's gradient grows by B / K: the lr shrinks by K / B and the momentum (a sum of gradients) grows
        by B / K, and each kept prompt's path stays the one it had (an optimiser owns its parameter, so the
        kept rows are a new leaf under a new SGD)."""
        count = max((losses.numel() + 1) // 2, self.config.prune_to)
        keep = losses.argsort()[:count].sort().values  # (K,)
        kept = relaxed.detach()[keep].clone().requires_grad_(True)  # (K, L, V)
        scale = losses.numel() / count
        group = optimizer.param_groups[0]
        fresh = torch.optim.SGD([kept], lr=group["lr"] / scale, momentum=group["momentum"])
        momentum = optimizer.state[relaxed].get("momentum_buffer")
        if momentum is not None:
            fresh.state[kept]["momentum_buffer"] = momentum[keep] * scale
        return kept, fresh, keep

    def _round(self, run: RunHarness, objective: TargetCE, relaxed: torch.Tensor, eligible: torch.Tensor,
               polish_wrong: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Score `round_samples` discrete prompts drawn from the rows of each `eligible` (B,) prompt of
        `relaxed` (B, L, V), all in one pass. Returns (rounded (B, L), hits (B,)): per prompt its exact draw
        (a hit) or its best draw with at most `polish_wrong` wrong target tokens, and -1 rows elsewhere."""
        cfg, lm = self.config, run.lm
        rounded = torch.full(relaxed.shape[:2], -1, dtype=torch.long, device=relaxed.device)  # (B, L)
        hits = torch.zeros(relaxed.shape[0], dtype=torch.bool, device=relaxed.device)
        owners = eligible.nonzero().flatten().tolist() if cfg.round_samples else []
        if not owners:
            return rounded, hits
        draws = [draw_discrete(relaxed[b], cfg.round_samples, run.generator) for b in owners]  # each (M_b, L)
        with torch.no_grad(), lm.compute(cfg.compute_dtype):
            losses, predictions = objective.hard_loss_and_predictions(lm, torch.cat(draws), run.context)
        wrong = (predictions != run.context.target_tensor(lm.device)).sum(-1)  # (sum M_b,)
        for b, own_draws, own_losses, own_wrong in zip(owners, draws, losses.split([len(d) for d in draws]),
                                                       wrong.split([len(d) for d in draws])):
            exact = own_wrong == 0
            pick = int(exact.nonzero()[0, 0] if exact.any() else own_losses.argmin())
            if own_wrong[pick] <= polish_wrong:
                rounded[b], hits[b] = own_draws[pick], bool(exact[pick])
        return rounded, hits

    def _decoded(self, run: RunHarness, objective: TargetCE, argmax: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The discrete prompts to judge for one relaxed prompt: its argmax (L,) alone, or, with
        `support_samples`, the hits among it and that many prompts drawn from its rows (L, V), else the
        lowest-loss of them (1 or more, L). With 1-3 target tokens still wrong, ADC's rows keep 2-3 tokens
        each, and the argmax is only one of their combinations (issue 12: the relaxation gap)."""
        cfg, lm = self.config, run.lm
        if cfg.support_samples == 0:
            return argmax[None]
        candidates = torch.cat([argmax[None], draw_discrete(rows, cfg.support_samples, run.generator)]).unique(dim=0)
        with torch.no_grad(), lm.compute(cfg.compute_dtype):
            losses, predictions = objective.hard_loss_and_predictions(lm, candidates, run.context)  # (M,), (M, T)
        hits = (predictions == run.context.target_tensor(lm.device)).all(-1)  # (M,)
        return candidates[hits] if hits.any() else candidates[losses.argmin()][None]

    def _with_target_starts(self, run: RunHarness, objective: TargetCE, start: torch.Tensor) -> torch.Tensor:
        """`start` (B, L, V) with its first `target_starts` prompts pulled to the target's lowest-loss
        rotations (mass `target_mass` on the rotation's token at each position; one scoring pass of at most
        T discrete prompts). A portfolio: the random starts keep exploring where the target's words mislead."""
        cfg, lm = self.config, run.lm
        if cfg.target_starts == 0:
            return start
        rotations = target_rotations(lm, run.problem.target_ids, run.problem.prompt_length,
                                     "ADCConfig.target_starts")  # (R, L)
        with torch.no_grad():
            losses, _ = objective.hard_loss_and_predictions(lm, rotations, run.context)  # (R,)
        order = losses.argsort()
        picked = rotations[order[torch.arange(cfg.target_starts, device=lm.device) % order.numel()]]  # (k, L)
        pulled = (1 - cfg.target_mass) * start[: cfg.target_starts] \
            + cfg.target_mass * F.one_hot(picked, lm.prompt_vocab_size).to(start.dtype)
        return torch.cat([pulled, start[cfg.target_starts :]])


def adc_default() -> ADCConfig:
    """ADC's optimiser (SGD lr 10, momentum 0.99), s_max 100, four parallel prompts, 2000 steps."""
    return ADCConfig()


def adc_sparse() -> ADCConfig:
    """`adc` with s_max 10 instead of 100: fewer tokens per row at every count of wrong target tokens, and
    one wrong token of ten already leaves a row one-hot (10 ** 0.1 rounds to 1), so more of the search runs
    on discrete prompts. On the natural set (AVX2 CPU, 180 s) it inverts 8 of 20 against `adc`'s 7, with the
    median time to success 53 s against 123 s and 7 of its 8 prompts pasting against 2 of 7
    (docs/benchmarks.md §6)."""
    return replace(adc_default(), support_max=10)


def adc_polish() -> ADCConfig:
    """`adc-sparse` with the discrete polish: a discrete lowest-loss prompt with one wrong target token gets a
    GCG step (64 single swaps from the top-32 of the gradient ADC already took, kept when one lowers the
    loss). Every success of its screen ended on a polished step (docs/benchmarks.md §6)."""
    return replace(adc_sparse(), polish_width=64, polish_topk=32, polish_wrong=None)


def adc_copy() -> ADCConfig:
    """`adc-polish` with copy swaps: each discrete near miss's swaps to the target's own tokens, scored once. The
    natural-set winner of 2026-12-07 (until `gcg-copy-screen`): paired with `adc-polish` (the same random starts),
    77 against 63 of 100 over five seeds, 15 runs gained and 1 lost (docs/benchmarks.md §6, "`adc-copy`, the
    winner")."""
    return replace(adc_polish(), copy_swaps=True)
