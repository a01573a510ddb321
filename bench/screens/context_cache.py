"""What the frame's prefix cache saves on a long fixed context (docs/benchmarks.md §7, issue 13).

A ~100-token system prompt in the embedded model's chat template, a 10-token user prompt, a 10-token
target. Times, side by side on one thread, the passes a search makes: scoring 64 candidates (bf16, as
`gcg-fast`), one gradient pass (bf16, B = 1) and one greedy 10-token judgement (float32) — once through
`SoftLM.framed` (the prefix's keys and values computed once, then reused) and once without the cache (the
same ids as one plain sequence, every pass over the whole context). The logits of both agree (printed).
Without the frame, the plain sequence's suffix is part of the "prompt" embeddings: the same positions.

Usage: python bench/screens/context_cache.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import torch
from timing import seconds, thread_args  # bench/screens/timing.py, next to this script

from softtoken.lm.frame import chat_frame
from softtoken.lm.softlm import as_softlm

SYSTEM = ("You are a careful assistant for a public library. Answer questions about opening hours, loans, "
          "renewals, fines, events and the catalogue. Be brief and friendly, never invent a policy, and when "
          "you do not know an answer say so and suggest asking at the front desk. Prefer plain words to jargon, "
          "give dates in full, and keep every reply under three sentences unless the reader asks for more.")



def main() -> None:
    args = thread_args()
    lm = as_softlm(None)
    frame = chat_frame(lm.tokenizer, SYSTEM)
    framed = lm.framed(frame)
    generator = torch.Generator().manual_seed(0)
    prompts = lm.allowed_ids[torch.randint(0, lm.prompt_vocab_size, (64, 10), generator=generator)]  # (64, L)
    target = torch.tensor(lm.encode(" The library opens at nine on weekdays."))[:10]
    prefix, suffix = torch.tensor(frame.prefix_ids), torch.tensor(frame.suffix_ids)
    whole = torch.cat([prefix.expand(64, -1), prompts, suffix.expand(64, -1)], 1)  # the same ids, no frame

    def score(model, ids):
        with torch.no_grad(), model.compute("bfloat16"):
            return model.teacher_forced_logits(model.embed_ids(ids), target)

    def gradient(model, ids):
        """d loss / d prompt embeddings; without the cache the prompt sits inside the plain sequence, and only it
        requires a gradient (the backward then skips nothing but the prefix's own weights' gradients)."""
        embeds = model.embed_ids(prompts[:1]).clone().requires_grad_(True)
        inputs = embeds if model is framed else torch.cat(
            [model.embed_ids(prefix[None]), embeds, model.embed_ids(suffix[None])], 1)
        with model.compute("bfloat16"):
            model.teacher_forced_logits(inputs, target).logsumexp(-1).sum().backward()

    def judge(model, ids):
        return model.greedy_generate(ids[:1], 10)

    print(f"context: {len(frame.prefix_ids)} prefix + {len(frame.suffix_ids)} suffix tokens; prompt 10; target 10; "
          f"{args.threads} thread(s)")
    difference = (score(framed, prompts) - score(lm, whole)).abs().max().item()
    print(f"max |logit difference| cached vs plain (bf16): {difference:.3g}")
    for name, fn in (("score 64 candidates", score), ("gradient pass", gradient), ("greedy judge", judge)):
        cached = seconds(lambda: fn(framed, prompts), args.repeats)
        plain = seconds(lambda: fn(lm, whole), args.repeats)
        print(f"{name:20s} cached {cached * 1000:8.1f} ms   plain {plain * 1000:8.1f} ms   speed-up {plain / cached:5.2f}x")


if __name__ == "__main__":
    main()
