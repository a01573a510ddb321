"""GCG: greedy coordinate gradient search over discrete prompts (Zou et al., arXiv 2307.15043).

Each step takes the gradient of the teacher-forced target loss w.r.t. the one-hot prompt (1 x L x V, prompt
vocabulary only), keeps the `topk` most negative entries per position, and builds `search_width` candidates
by replacing `n_replace` random positions with tokens drawn uniformly from those top-k lists. Candidates
that change under decode -> re-encode are dropped (`filter_ids`); the rest are scored in batches of
`candidate_batch_size` with one teacher-forced pass each. The prompt moves to the best candidate (nanoGCG
semantics) or, with a buffer, to the best of the `buffer_size` best prompts seen. A teacher-forced argmax
match is a greedy match for a discrete prompt, so scoring detects success for free; a hit is confirmed,
and every `eval_every` steps the current prompt scored, by the shared greedy evaluator. Defaults follow
nanoGCG's documented config (peers.md §1.1); `gcg_paper_lmi()` follows the DLMI repository (§7.2).

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = GCG(GCGConfig(search_width=128, topk=64)).run(problem, Budget(steps=50))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from softtoken.configcheck import check_types
from softtoken.lm.evaluation import survives_reencoding
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.lm.softlm import SoftLM
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.candidates import (lowest_estimate_swaps, sample_candidates, score_candidates, span_placements,
                                         token_swaps)
from softtoken.methods.curriculum import curriculum_open, extend_target, start_curriculum
from softtoken.methods.harness import ConfiguredMethod, RunHarness
from softtoken.methods.starts import prompt_indices, target_rotations, target_spans
from softtoken.objectives import TOKEN_LOSSES, Objective, TargetCE
from softtoken.objectives.target import REDUCTIONS, MeanTarget, per_target

INIT_STRATEGIES = ("text", "zeros", "random", "target")


@dataclass(frozen=True, kw_only=True)
class GCGConfig:
    """Defaults are nanoGCG's (num_steps -> epochs, search_width, topk, n_replace, buffer_size, filter_ids)."""

    epochs: int = 250  # optimisation steps (nanoGCG num_steps)
    search_width: int = 512  # candidates per step
    topk: int = 256  # tokens per position to sample from, capped at the prompt vocabulary size
    n_replace: int = 1  # positions changed per candidate, <= prompt length
    buffer_size: int = 0  # 0: always move to the step's best candidate; k: optimise from the best of k kept
    accept_only_if_better: bool = False  # keep the current prompt unless a candidate lowers the loss
    filter_ids: bool = True  # drop candidates that change under decode -> re-encode
    init_strategy: str = "text"  # text: init_text's token at every position; zeros: the first allowed token;
    # target: the best-scoring rotation of the target's own tokens, tiled to the prompt length
    init_text: str = " x"  # one-token text repeated L times, as nanoGCG's "x x x ..." (survives a round trip)
    loss: str = "crossentropy"  # crossentropy (nanoGCG) or margin (log p(y_t) - max_v log p(v), DLMI repo)
    loss_reduction: str = "mean"  # over target positions: mean, or mellowmax (nanoGCG's use_mellowmax idea)
    candidate_batch_size: int = 64  # candidates per forward pass (speed only)
    eval_every: int = 10  # steps between greedy evaluations of the current prompt, >= 1
    distinct_swaps: bool = False  # draw the width's (position, token) swaps without replacement (n_replace 1)
    compute_dtype: str = "float32"  # gradient and candidate scoring under autocast; the judge stays float32
    # Levers of issue 12 (each off by default, so the presets above are unchanged):
    combine_swaps: int = 0  # also score the prompts applying the best 2..k+1 improving single swaps at once (ACG)
    proposal_momentum: float = 0.0  # in [0, 1): propose from a running mean of normalised -gradients (a relaxed Z)
    model_proposals: int = 0  # per position, this many of the top-k are the model's own next tokens (BEAST), < topk
    restart_patience: int = 0  # restart from a random prompt after this many steps without a lower loss; 0 never
    prefix_cache: bool = False  # score candidates from the current prompt's keys/values before their first change
    target_curriculum: int = 0  # k > 0: optimise the target's first k tokens, k more once they are all right; 0 off
    # Copy candidates (issue 12): the model copies from its context, and ADC's copy swaps (swaps to one of the
    # target's own tokens) won the natural set for it. Each step also scores the `copy_candidates` swaps of the
    # current prompt to a target token whose first-order loss change under the step's gradient is lowest, beside
    # the `search_width` drawn ones (a universal prompt's: any of its targets' tokens). 0: off.
    copy_candidates: int = 0
    # Span copies: also the `copy_spans` placements of `copy_span_length` consecutive target tokens over as many
    # consecutive prompt positions that the gradient ranks first (summed first-order change): the model copies
    # phrases, and a span's first token alone often lowers no loss, so single swaps rarely build one. 0: off.
    copy_spans: int = 0
    copy_span_length: int = 2  # >= 2, <= the prompt length
    # Target screening (issue 12's "score only a prefix of the target first"): each chunk of candidates is scored
    # on the target's first `screen_tokens` tokens, and only its `screen_keep` share with the lowest loss there on
    # the rest, from the first pass's keys and values. 0: every candidate on the whole target.
    screen_tokens: int = 0  # < the target length
    screen_keep: float = 0.25  # in (0, 1]

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "search_width", "topk", "n_replace", "candidate_batch_size", "eval_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GCGConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("buffer_size", "combine_swaps", "model_proposals", "restart_patience", "target_curriculum",
                     "copy_candidates", "copy_spans", "screen_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"GCGConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.copy_span_length < 2:
            raise ValueError(f"GCGConfig.copy_span_length must be >= 2, got {self.copy_span_length}")
        if self.screen_tokens and self.target_curriculum:
            raise ValueError("GCGConfig.screen_tokens and target_curriculum do not combine: the curriculum's shown "
                             f"target can be shorter than the screen; got {self.screen_tokens} and "
                             f"{self.target_curriculum}")
        if not 0 < self.screen_keep <= 1:
            raise ValueError(f"GCGConfig.screen_keep must be in (0, 1], got {self.screen_keep}")
        if not 0 <= self.proposal_momentum < 1:
            raise ValueError(f"GCGConfig.proposal_momentum must be in [0, 1), got {self.proposal_momentum}")
        if self.model_proposals >= self.topk:
            raise ValueError(f"GCGConfig.model_proposals must be < topk={self.topk}, got {self.model_proposals}")
        if self.distinct_swaps and self.n_replace != 1:
            raise ValueError(f"GCGConfig.distinct_swaps needs n_replace=1, got n_replace={self.n_replace}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"GCGConfig.compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        choices = {"init_strategy": INIT_STRATEGIES, "loss": tuple(sorted(TOKEN_LOSSES)), "loss_reduction": REDUCTIONS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"GCGConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")

    @property
    def buffer_capacity(self) -> int:
        # Accept-only-if-better is a buffer of one: the current prompt is always the best seen.
        return max(self.buffer_size, 1 if self.accept_only_if_better else 0)


def combined_swaps(current: torch.Tensor, candidates: torch.Tensor, losses: torch.Tensor, current_loss: float,
                   count: int) -> torch.Tensor:
    """Prompts (k, L) applying the best 2, 3, ..., count+1 improving single swaps of `candidates` at once.

    candidates (N, L) each differ from `current` (L,) at one position; per position only its best swap
    is used, taken in order of loss. Fewer than two improving positions give no prompt (0, L)."""
    order = losses.argsort()
    chosen: dict[int, int] = {}  # position -> token
    for index in order[losses[order] < current_loss].tolist():
        changed = (candidates[index] != current).nonzero().flatten().tolist()
        if len(changed) == 1 and changed[0] not in chosen:
            chosen[changed[0]] = int(candidates[index, changed[0]])
    swaps = list(chosen.items())[: count + 1]
    prompts = []
    for size in range(2, len(swaps) + 1):
        prompt = current.clone()
        for position, token in swaps[:size]:
            prompt[position] = token
        prompts.append(prompt)
    return torch.stack(prompts) if prompts else current.new_empty((0, current.numel()))


def model_proposal_gradient(grad: torch.Tensor, next_token_logits: torch.Tensor, count: int) -> torch.Tensor:
    """The gradient (L, V) with each position's `count` most likely next tokens under the model moved to
    the front of its top-k (BEAST-style fluent proposals); next_token_logits (L-1, V) score positions 1..L-1."""
    proposal = grad.clone()
    picks = next_token_logits.topk(count, dim=-1).indices  # (L-1, count)
    proposal[1:].scatter_(1, picks, float("-inf"))  # -grad's topk takes -inf first
    return proposal


def roundtrip_mask(lm: SoftLM, candidates: torch.Tensor) -> torch.Tensor:
    """(N,) True where the candidate's model ids survive decode -> re-encode unchanged, in their frame."""
    ids = lm.to_model_ids(candidates).tolist()
    return torch.tensor([survives_reencoding(lm, row) for row in ids], device=candidates.device)


class Buffer:
    """The `capacity` lowest-loss prompts seen (nanoGCG's attack buffer); capacity 0 holds only the latest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: list[tuple[float, torch.Tensor]] = []

    def offer(self, loss: float, prompt: torch.Tensor) -> None:
        if self.capacity == 0:
            self.entries = [(loss, prompt)]
        elif len(self.entries) < self.capacity or loss < self.entries[-1][0]:
            self.entries = sorted([*self.entries, (loss, prompt)], key=lambda e: e[0])[: self.capacity]

    def best(self) -> tuple[float, torch.Tensor]:
        return self.entries[0]


@register_method("gcg")
class GCG(ConfiguredMethod):
    """Greedy coordinate gradient: one gradient, many scored single-token swaps per step."""

    name = "gcg"
    config_class = GCGConfig
    universal = True

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None, *,
            initial: torch.Tensor | None = None) -> Result:
        """Search from `initial` (L,) prompt-vocabulary indices (default: the configured init) until exact
        match or the budget; return the best discrete prompt found."""
        cfg, lm = self.config, problem.lm
        if initial is not None and tuple(initial.shape) != (problem.prompt_length,):
            raise ValueError(f"GCG initial prompt must have shape ({problem.prompt_length},), got {tuple(initial.shape)}")
        if cfg.n_replace > problem.prompt_length:
            raise ValueError(f"GCGConfig.n_replace={cfg.n_replace} exceeds prompt_length={problem.prompt_length}")
        if cfg.copy_spans and cfg.copy_span_length > problem.prompt_length:
            raise ValueError(f"GCGConfig.copy_span_length={cfg.copy_span_length} exceeds "
                             f"prompt_length={problem.prompt_length}")
        if cfg.screen_tokens and (problem.universal or cfg.screen_tokens >= len(problem.target_ids)):
            raise ValueError(f"GCGConfig.screen_tokens={cfg.screen_tokens} needs one target longer than it, got "
                             + ("a universal prompt" if problem.universal else f"{len(problem.target_ids)} tokens"))
        run = self.harness(problem, budget, tracker)
        start_curriculum(run, cfg.target_curriculum)
        objective = self.objective(problem)
        current = self._init(run, objective) if initial is None else initial.to(lm.device)  # (L,)
        buffer, memory, since_better = Buffer(cfg.buffer_capacity), None, 0
        loss, _ = self._score(run, objective, current.unsqueeze(0))
        buffer.offer(loss[0].item(), current)
        lowest = loss[0].item()  # lowest loss since the last (re)start
        copy_tokens = prompt_indices(lm, problem.target_ids).unique()  # (K,)
        copy_spans = target_spans(lm, problem.target_ids, cfg.copy_span_length)  # (S, k)
        for step in run.steps():
            current_loss = buffer.best()[0]
            grad = self._token_gradient(run, objective, current)  # (L, V)
            proposal, memory = self._proposal(run, current, grad, memory)  # (L, V)
            candidates = self._candidates(run, current, proposal)  # (N, L)
            candidates = self._with_copies(run, current, grad, candidates, copy_tokens, copy_spans)  # (N', L)
            losses, exact = self._score(run, objective, candidates, current)
            combined = self._filtered(lm, combined_swaps(current, candidates, losses, current_loss,
                                                         cfg.combine_swaps))  # (k, L)
            if combined.shape[0]:
                extra_losses, extra_exact = self._score(run, objective, combined, current)
                candidates, losses = torch.cat([candidates, combined]), torch.cat([losses, extra_losses])
                exact = torch.cat([exact, extra_exact])
            winner = int(losses.argmin())
            buffer.offer(losses[winner].item(), candidates[winner])
            current = buffer.best()[1]
            since_better = 0 if buffer.best()[0] < lowest else since_better + 1
            lowest = min(lowest, buffer.best()[0])
            run.log({"loss/target": buffer.best()[0], "search/candidates": int(candidates.shape[0]),
                     **self._curriculum_metrics(run)})
            hit = candidates[exact][:1]  # a teacher-forced hit, confirmed by the greedy evaluator
            if curriculum_open(run):  # so far a hit on the prefix shown
                hit = hit[:0]
                if exact[winner] and torch.equal(current, candidates[winner]):
                    buffer, hit = self._extend_target(run, objective, buffer)
                    current, lowest, since_better = buffer.best()[1], buffer.best()[0], 0
            if hit.shape[0] or step % cfg.eval_every == 0 or step == run.max_steps:
                run.evaluate(hit[0] if hit.shape[0] else current)
            if cfg.restart_patience and since_better >= cfg.restart_patience and not run.judge.exact:
                run.evaluate(current)  # the judge keeps this basin's prompt
                current, buffer, memory, since_better = self._restart(run, objective)
                lowest = buffer.best()[0]
        return run.result(self.name, cfg, final=current, objective=objective)

    def _curriculum_metrics(self, run: RunHarness) -> dict[str, int]:
        return {"search/target_tokens": len(run.context.target_ids)} if self.config.target_curriculum else {}

    def _extend_target(self, run: RunHarness, objective: Objective, buffer: Buffer) -> tuple[Buffer, torch.Tensor]:
        """The current prompt gets the shown target prefix right: show more of the target (methods/curriculum)
        and re-score the buffer on it, since losses on different prefixes do not compare. Returns that buffer
        and the prompt as a (1, L) hit if it gets the whole target right, else (0, L)."""
        current = buffer.best()[1].unsqueeze(0)  # (1, L)
        whole = extend_target(run, objective, current, extra=self.config.target_curriculum,
                              compute_dtype=self.config.compute_dtype)
        prompts = torch.stack([prompt for _, prompt in buffer.entries])  # (K, L)
        rescored = Buffer(buffer.capacity)
        for loss, prompt in zip(self._score(run, objective, prompts)[0].tolist(), prompts):
            rescored.offer(loss, prompt)
        return rescored, current[whole]

    def _proposal(self, run: RunHarness, current: torch.Tensor, grad: torch.Tensor,
                  memory: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What candidates are drawn from (L, V), lower = better as a gradient: this step's gradient, or its
        running mean (momentum), with the model's own next tokens in front (model proposals)."""
        cfg = self.config
        if cfg.proposal_momentum:
            unit = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # each position on one scale
            memory = unit if memory is None else cfg.proposal_momentum * memory + (1 - cfg.proposal_momentum) * unit
            grad = memory
        if cfg.model_proposals and current.numel() > 1:
            with torch.no_grad(), run.lm.compute(cfg.compute_dtype):
                logits = run.lm.sequence_logits(run.lm.embed_ids(run.lm.to_model_ids(current[:-1]))[None])[0]
            grad = model_proposal_gradient(grad, logits[:, run.lm.allowed_ids], cfg.model_proposals)
        return grad, memory

    def _restart(self, run: RunHarness, objective: Objective) -> tuple[torch.Tensor, Buffer, None, int]:
        """A fresh random prompt with an empty buffer and proposal memory."""
        current = torch.randint(0, run.lm.prompt_vocab_size, (run.problem.prompt_length,), generator=run.generator,
                                device=run.lm.device)
        buffer = Buffer(self.config.buffer_capacity)
        buffer.offer(self._score(run, objective, current.unsqueeze(0))[0][0].item(), current)
        run.record({"search/restart_step": run.step})
        return current, buffer, None, 0

    def objective(self, problem: Problem) -> TargetCE | MeanTarget:
        """The teacher-forced target loss the gradient and the candidate scores share; a universal prompt's
        is the mean over its targets (each in its own frame), so one batch of candidates is scored on all."""
        single = TargetCE(token_loss=self.config.loss, reduction=self.config.loss_reduction)
        return MeanTarget(parts=per_target(single, problem.universal)) if problem.universal else single

    def _init(self, run: RunHarness, objective: Objective) -> torch.Tensor:
        """Initial prompt (L,) as prompt-vocabulary indices."""
        problem, lm, cfg = run.problem, run.lm, self.config
        shape = (problem.prompt_length,)
        if cfg.init_strategy == "text":
            ids = lm.encode(cfg.init_text)
            index = (lm.allowed_ids == ids[0]).nonzero() if len(ids) == 1 else torch.empty(0)
            if index.numel() == 0:
                raise ValueError(f"GCGConfig.init_text={cfg.init_text!r} must encode to one allowed token, "
                                 f"got ids {ids}; change it or use init_strategy='zeros'")
            return index[0, 0].expand(shape).clone()
        if cfg.init_strategy == "zeros":
            return torch.zeros(shape, dtype=torch.long, device=lm.device)
        if cfg.init_strategy == "target":
            return self._target_init(run, objective)
        return torch.randint(0, lm.prompt_vocab_size, shape, generator=run.generator, device=lm.device)

    def _target_init(self, run: RunHarness, objective: Objective) -> torch.Tensor:
        """The lowest-loss of the target's rotations tiled to the prompt length (L,): the target's own words
        put the model on its topic (on the natural set the tiled target starts at ~2/3 of the loss of
        " x" x L), and the rotations try each target token as the one the prompt ends on. Tokens outside
        the prompt vocabulary are skipped; rotations that do not survive the text round trip are dropped
        unless none does. One scoring pass of at most T prompts."""
        lm = run.lm
        rotations = target_rotations(lm, run.problem.target_ids, run.problem.prompt_length,
                                     "GCGConfig.init_strategy='target'")  # (R, L)
        kept = self._filtered(lm, rotations)
        candidates = kept if kept.shape[0] else rotations
        losses, _ = self._score(run, objective, candidates)
        return candidates[int(losses.argmin())].clone()

    def _token_gradient(self, run: RunHarness, objective: Objective, current: torch.Tensor) -> torch.Tensor:
        """Gradient of the loss w.r.t. the one-hot prompt over the prompt vocabulary -> (L, V)."""
        lm = run.lm
        one_hot = F.one_hot(current, lm.prompt_vocab_size).float().unsqueeze(0).requires_grad_(True)  # (1, L, V)
        with lm.compute(self.config.compute_dtype):
            loss = objective.loss(lm, one_hot, run.context)[0]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"GCG loss is {loss.item()}; check the model dtype")
        return torch.autograd.grad(loss, one_hot)[0][0]

    def _candidates(self, run: RunHarness, current: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """This step's candidates (N, L). When none survives the re-encoding filter (a start whose other
        positions already do not round-trip, e.g. a relaxed method's prompt: every single swap keeps the
        bad pair), they are kept unfiltered for this step, so the search can move out of it; the judge's
        round trip still reports whether the final prompt pastes."""
        cfg = self.config
        candidates = sample_candidates(current, grad, search_width=cfg.search_width, topk=cfg.topk,
                                       n_replace=cfg.n_replace, generator=run.generator, distinct=cfg.distinct_swaps)
        kept = self._filtered(run.lm, candidates)
        if kept.shape[0] == 0:
            run.record({"search/unfiltered_step": run.step})
            return candidates
        return kept

    def _with_copies(self, run: RunHarness, current: torch.Tensor, grad: torch.Tensor, candidates: torch.Tensor,
                     tokens: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """`candidates` (N, L) and, after them, the `copy_candidates` swaps of `current` (L,) to `tokens` (K,) and then
        the `copy_spans` placements of `spans` (S, k) that the one-hot gradient (L, V) ranks first, less the
        re-encoding filter's drops and those already among the candidates."""
        cfg = self.config
        for width, moves, sources in ((cfg.copy_candidates, token_swaps, tokens),
                                      (cfg.copy_spans, span_placements, spans)):
            if width:  # built only when asked for: this runs every step
                copies = lowest_estimate_swaps(current, self._filtered(run.lm, moves(current, sources)), grad, width)
                taken = (copies[:, None] == candidates[None]).all(-1).any(-1)  # (M',)
                candidates = torch.cat([candidates, copies[~taken]])
        return candidates

    def _filtered(self, lm: SoftLM, candidates: torch.Tensor) -> torch.Tensor:
        """The candidates (N, L) that survive decode -> re-encode, when `filter_ids` asks for it."""
        return candidates[roundtrip_mask(lm, candidates)] if self.config.filter_ids and candidates.shape[0] else candidates

    def _score(self, run: RunHarness, objective: Objective, candidates: torch.Tensor,
               current: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses (N,) and teacher-forced exact matches (N,) of candidates (N, L) (methods/scoring.py)."""
        cfg = self.config
        return score_candidates(run, objective, candidates, current, batch_size=cfg.candidate_batch_size,
                                prefix_cache=cfg.prefix_cache, compute_dtype=cfg.compute_dtype,
                                screen_tokens=cfg.screen_tokens, screen_keep=cfg.screen_keep)


def gcg_paper_lmi() -> GCGConfig:
    """GCG as the DLMI repository runs it (§7.2): 704 candidates, top-128, one swap, id-0 init, accept only if
    better, the log-prob-difference loss, no retokenisation filter (none is described), 2048 steps."""
    return GCGConfig(epochs=2048, search_width=704, topk=128, n_replace=1, accept_only_if_better=True,
                     filter_ids=False, init_strategy="zeros", loss="margin")


def gcg_fast() -> GCGConfig:
    """GCG for CPU seconds (the benchmark winner, docs/benchmarks.md §5): 64 distinct swaps a step drawn from
    each position's top-32, gradient and scoring under bf16 autocast where the hardware has native bf16
    ("auto": float32 on an AVX2-only CPU, where bf16 is ~7x slower), nanoGCG's " x" start and filter.

    Against nanoGCG's width 512 / top-256 in float32 it takes ~10x more steps per second on a bf16 CPU;
    the float32 judge still decides success, so bf16 can only cost a missed hit, never a false one."""
    return GCGConfig(search_width=64, topk=32, candidate_batch_size=64, distinct_swaps=True, compute_dtype="auto")


def gcg_combo() -> GCGConfig:
    """`gcg-fast` with the search levers that won the natural-set screen (docs/benchmarks.md §6): each
    position's top-32 holds the model's own 8 likeliest next tokens (fluent, BEAST-style proposals), the
    gradient is averaged over steps (momentum 0.5), the best improving swaps are also tried together (up to
    5 at once), a stalled search restarts after 40 steps, and candidates are scored from the current
    prompt's cached prefix in sorted chunks of 16 (+8 % candidates per second on one thread,
    `bench/screens/scoring_rate.py`; the benchmark in §6 ran the earlier one-pass-per-position form)."""
    return replace(gcg_fast(), model_proposals=8, combine_swaps=4, proposal_momentum=0.5, restart_patience=40,
                   prefix_cache=True, candidate_batch_size=16)


def gcg_target() -> GCGConfig:
    """`gcg-combo` started from the target's own tokens (`init_strategy="target"`): the lowest-loss rotation of
    the target tiled to the prompt length. On held-out natural openings it inverted 6 of 12 where `gcg-fast`
    from " x" x L got 2 of 8; on the benchmark's 20 it raised the mean LCS (0.65 against 0.47) but not the
    exact count (2 against 3): 16 of its 18 misses are one to three tokens, often the first, that the
    target's copied words leave wrong (docs/benchmarks.md §6)."""
    return replace(gcg_combo(), init_strategy="target")


def gcg_copy() -> GCGConfig:
    """`gcg-fast` whose steps also score the 16 copy swaps (swaps to one of the target's own tokens) the step's
    gradient ranks first: 80 candidates a step. On the natural set over paired seeds 0-4 (AVX2 CPU, 180 s) 78 of
    100 against 77 for `adc-copy` on the same seeds, more of the hard targets and fewer of the easy ones, and every
    exact prompt pastes (docs/benchmarks.md §6, "Copy candidates in GCG")."""
    return replace(gcg_fast(), copy_candidates=16)


def gcg_copy_screen() -> GCGConfig:
    """`gcg-copy` that scores its 80 candidates a step in one chunk on the target's first 3 tokens and finishes only
    the quarter lowest there (target screening): 0.73 of the positions a candidate, about 1.3 times the steps in
    the same seconds on one CPU thread, and the step's lowest-loss candidate is among the finished in 0.93-0.95 of
    the steps. The natural-set winner since 2026-12-08: 85 against `gcg-copy`'s 81 of 100 side by side over five
    paired seeds, every prompt pastes (docs/benchmarks.md §6, "Screening candidates on the target's first
    tokens")."""
    return replace(gcg_copy(), screen_tokens=3, screen_keep=0.25, candidate_batch_size=80)
