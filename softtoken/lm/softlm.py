"""SoftLM: a frozen causal LM driven by distributions over tokens instead of token ids.

Shapes: B batch/trajectories, L prompt, T target, V prompt vocabulary (allowed ids only),
V_out the model's output vocabulary, D hidden size.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from softtoken.lm.cache import cache_kwargs, returned_cache
from softtoken.lm.frame import Frame
from softtoken.lm.loading import LoadedModel, freeze, load_model, resolve_compute_dtype, resolve_dtype
from softtoken.lm.mixture import mix
from softtoken.lm.vocab import prompt_vocabulary

# feed(logits (B, V_out), step, hidden (B, D) | None) -> next input embeddings (B, 1, D)
Feedback = Callable[[torch.Tensor, int, torch.Tensor | None], torch.Tensor]


@dataclass
class TokenCounter:
    """Positions sent through the model, counted where the passes are made, so no caller has to.

    `backward` counts the positions of passes recorded by autograd (inputs that require grad under
    grad mode): those are the passes a backward goes through."""

    forward: int = 0
    backward: int = 0

    def add(self, inputs: torch.Tensor, *, recorded: bool | None = None) -> None:
        """Count one pass over input embeddings (B, n, D); `recorded` defaults to whether autograd records it."""
        positions = int(inputs.shape[0] * inputs.shape[1])
        self.forward += positions
        if recorded if recorded is not None else (inputs.requires_grad and torch.is_grad_enabled()):
            self.backward += positions

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward


class SoftLM:
    """Wrap a frozen HF causal LM: soft-prompt embedding, teacher-forced and free-running target logits.

    Every pass reads the prompt inside `frame` (fixed ids before and after it, `framed`): the prefix's keys
    and values are computed once per model and dtype and reused by every pass, so every method works in
    context without knowing it; the empty frame runs exactly the bare passes."""

    def __init__(self, model: Any, tokenizer: Any, *, allowed_ids: torch.Tensor | None = None,
                 name: str | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.embedding = model.get_input_embeddings().weight  # (V_emb, D)
        self.device, self.dtype = self.embedding.device, self.embedding.dtype
        if allowed_ids is None:
            allowed_ids = prompt_vocabulary(tokenizer, self.embedding.shape[0])
        self.allowed_ids = allowed_ids.to(self.device).contiguous()  # (V,)
        # float32 copy of the allowed rows: soft mixtures over ~50k rows lose precision in bf16.
        self.prompt_matrix = self.embedding.detach()[self.allowed_ids].float()  # (V, D)
        self._low_precision_rows: dict[torch.dtype, torch.Tensor] = {}  # compute-dtype copies, made on first use
        self._compute_models: dict[tuple[torch.dtype | None, bool], Any] = {}  # see _compute_model
        self.active_model = model  # what the passes below call: `model`, or its compute copy in `compute`
        self.tokens = TokenCounter()  # every pass below adds to it
        self.frame = Frame()
        self._frame_caches: dict[tuple[int, tuple[int, ...]], Any] = {}  # (id(active model), prefix) -> KV cache

    def framed(self, frame: Frame) -> SoftLM:
        """This model with `frame` around every prompt; shares weights, compute copies, caches and counts."""
        view = copy.copy(self)
        view.frame = frame
        return view

    def restricted(self, allowed_ids: torch.Tensor) -> SoftLM:
        """This model with another prompt vocabulary (sorted model ids); everything else shared."""
        view = copy.copy(self)
        view.allowed_ids = allowed_ids.to(self.device).contiguous()  # searchsorted wants a contiguous boundary
        view.prompt_matrix = self.embedding.detach()[view.allowed_ids].float()
        view._low_precision_rows = {}
        return view

    @property
    def context_limit(self) -> int | None:
        """The most positions the model takes (its `max_position_embeddings`), if it says."""
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def prompt_vocab_size(self) -> int:
        return int(self.allowed_ids.numel())

    @property
    def hidden_size(self) -> int:
        return int(self.embedding.shape[1])

    @property
    def output_vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def compute(self, dtype: str = "float32", *, compiled: bool = False) -> contextlib.AbstractContextManager[None]:
        """Context in which the model's passes run in `dtype` (autocast), through torch.compile'd decoder
        layers if `compiled`; float32 (or the model's own dtype) without compile leaves them as they are.
        The model itself is never changed, so one SoftLM serves a bf16 search and the float32 evaluation
        that judges it."""
        wanted = resolve_compute_dtype(dtype, self.device)
        low = wanted in (torch.bfloat16, torch.float16) and wanted != self.dtype
        if not (low or compiled):
            return contextlib.nullcontext()
        return self._compute_copy(wanted if low else None, compiled)

    @contextlib.contextmanager
    def _compute_copy(self, dtype: torch.dtype | None, compiled: bool) -> Iterator[None]:
        previous, self.active_model = self.active_model, self._compute_model(dtype, compiled)
        try:
            autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with autocast:
                yield
        finally:
            self.active_model = previous

    def _compute_model(self, dtype: torch.dtype | None, compiled: bool) -> Any:
        """The model the passes call under `compute`, made on first use and cached.

        Low precision on a CPU: a copy with `dtype` weights (buffers such as rotary frequencies stay
        float32) and eager attention: autocast only caches casts of weights that require grad, so a frozen
        model's weights are re-cast on every pass (a quarter of a bf16 step at L = 10), and the fused CPU
        attention's bf16 backward is slower than eager at prompt lengths like ours. On an accelerator the
        casts are cheap next to a second copy of the weights: the model itself, under autocast.
        `compiled`: a copy whose decoder layers go through torch.compile (one graph serves every layer);
        a copy, because the judge's greedy decoding would recompile for every new KV-cache length."""
        key = (dtype, compiled)
        if key not in self._compute_models:
            cpu_low = dtype is not None and self.device.type == "cpu"
            model = copy.deepcopy(self.model) if cpu_low or compiled else self.model
            if cpu_low:
                for parameter in model.parameters():
                    parameter.data = parameter.data.to(dtype)
                model.set_attn_implementation("eager")
            if compiled:
                compile_decoder_layers(model)
            self._compute_models[key] = model
        return self._compute_models[key]

    # ----------------------------------------------------------------- embeddings
    def embed_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """probs (B, L, V) over the prompt vocabulary -> embeddings (B, L, D) in the model dtype (sparse rows are
        gathered, `mixture.mix`).

        Under `compute("bfloat16")` the mixture uses a cached bf16 copy of the prompt rows instead of
        letting autocast re-cast all V x D of them on every call."""
        if torch.is_autocast_enabled(self.device.type):
            dtype = torch.get_autocast_dtype(self.device.type)
            if dtype not in self._low_precision_rows:
                self._low_precision_rows[dtype] = self.prompt_matrix.to(dtype)
            return mix(probs, self._low_precision_rows[dtype]).to(self.dtype)
        return mix(probs.float(), self.prompt_matrix).to(self.dtype)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (..., L) in the model vocabulary -> embeddings (..., L, D)."""
        return self.embedding.detach()[ids]

    def to_model_ids(self, prompt_index: torch.Tensor) -> torch.Tensor:
        """Indices into the prompt vocabulary -> model token ids."""
        return self.allowed_ids[prompt_index]

    def to_prompt_index(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model token ids (...) -> their indices into the prompt vocabulary (...) and whether each id is in it
        (...); where it is, the inverse of `to_model_ids`."""
        index = torch.searchsorted(self.allowed_ids, ids).clamp_max(self.prompt_vocab_size - 1)  # allowed_ids is sorted
        return index, self.allowed_ids[index] == ids

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def encode_target(self, text: str) -> tuple[int, ...]:
        """A target's token ids, refused when tokenising loses part of it (unknown words, dropped characters)."""
        ids, unk = tuple(self.encode(text)), self.tokenizer.unk_token
        decoded = self.decode(ids)
        # More unknown tokens than the text spells out lost words, even where a decoder hides them.
        unknown = unk is not None and ids.count(self.tokenizer.unk_token_id) > text.count(unk)
        if unknown or _visible(decoded) != _visible(text):
            raise ValueError(f"the target does not survive tokenisation: {text!r} decodes back as {decoded!r}")
        return ids

    # ----------------------------------------------------------------- target logits
    def teacher_forced_logits(self, prompt_embeds: torch.Tensor, target_ids: torch.Tensor,
                              past: Any = None) -> torch.Tensor:
        """One forward pass on [prompt ; suffix ; y_1..y_{T-1}] after the frame's cached prefix -> logits
        (B, T, V_out) predicting y_1..y_T; after `past` instead, from `prompt_prefix_past`, for prompts that
        start with its prompt prefix (`prompt_embeds` then holds only the rest of each prompt).

        Only the last T positions go through the LM head (`logits_to_keep`), given as indices: an int
        slices the hidden states into a non-contiguous view, which turns the head into a batched matmul
        against B copies of the V x D weight (2-3x slower on CPU); indexing copies the T rows instead.
        """
        past = self._prefix_past(prompt_embeds.shape[0]) if past is None else past
        return self._target_pass(prompt_embeds, target_ids, past).logits.float()

    def teacher_forced_and_prompt_logits(
        self, prompt_embeds: torch.Tensor, target_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`teacher_forced_logits` (B, T, V_out), and from the same pass the logits after each prompt position
        but the last (B, L-1, V_out): what the model predicts for the prompt's own next token (its fluency)."""
        width = prompt_embeds.shape[1] - 1
        logits = self._target_pass(prompt_embeds, target_ids, self._prefix_past(prompt_embeds.shape[0]),
                                   leading=width).logits.float()  # (B, L-1+T, V_out)
        return logits[:, width:], logits[:, :width]

    @torch.no_grad()
    def teacher_forced_head(self, prompt_embeds: torch.Tensor, target_ids: torch.Tensor,
                            past: Any = None) -> tuple[torch.Tensor, Any]:
        """`teacher_forced_logits` on a target's first tokens `target_ids` (t,) -> logits (B, t, V_out), and the
        pass's cache, from which `teacher_forced_tail` finishes the target for some of the rows."""
        past = self._prefix_past(prompt_embeds.shape[0]) if past is None else past
        out = self._target_pass(prompt_embeds, target_ids, past, cached=True)
        return out.logits.float(), returned_cache(out)

    @torch.no_grad()
    def teacher_forced_tail(self, cache: Any, rows: torch.Tensor, target_ids: torch.Tensor, start: int) -> torch.Tensor:
        """Logits (n, T - start, V_out) predicting y_{start+1}..y_T of target_ids (T,) for the rows (n,) of a
        `teacher_forced_head` cache that ends after y_{start-1}: one pass on y_start..y_{T-1} (the cache is cut
        down to the rows, in place)."""
        cache.batch_select_indices(rows)
        inputs = self.embed_ids(target_ids[start - 1:-1].to(self.device)).unsqueeze(0).expand(rows.numel(), -1, -1)
        self.tokens.add(inputs)
        out = self.active_model(inputs_embeds=inputs, use_cache=True, **cache_kwargs(self.active_model, cache))
        return out.logits.float()

    def _target_pass(self, prompt_embeds: torch.Tensor, target_ids: torch.Tensor, past: Any,
                     leading: int = 0, cached: bool = False) -> Any:
        """The model's output on [prompt ; frame suffix ; y_1..y_{T-1}] after `past` (or nothing): the last T
        logits (B, T, V_out), after the logits of the first `leading` input positions when that is > 0
        (B, leading + T, V_out), and the cache when there is a past or `cached` asks for one."""
        steps = int(target_ids.numel())
        target_embeds = self.embed_ids(target_ids[:-1].to(self.device)).unsqueeze(0)  # (1, T-1, D)
        inputs = self._in_frame(prompt_embeds, target_embeds)
        length = inputs.shape[1]
        keep = torch.cat([torch.arange(leading, device=inputs.device),
                          torch.arange(length - steps, length, device=inputs.device)])
        self.tokens.add(inputs)
        return self.active_model(inputs_embeds=inputs, use_cache=cached or past is not None, logits_to_keep=keep,
                                 **cache_kwargs(self.active_model, past))

    def _in_frame(self, prompt_embeds: torch.Tensor, tail: torch.Tensor | None = None) -> torch.Tensor:
        """[prompt (B, L, D) ; the frame's suffix ; tail (1, n, D)] -> (B, L + S + n, D)."""
        batch = prompt_embeds.shape[0]
        parts = [prompt_embeds]
        if self.frame.suffix_ids:
            suffix = self.embed_ids(torch.tensor(self.frame.suffix_ids, device=self.device))
            parts.append(suffix.unsqueeze(0).expand(batch, -1, -1))
        if tail is not None and tail.shape[1]:
            parts.append(tail.expand(batch, -1, -1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else prompt_embeds

    def _prefix_past(self, batch: int) -> Any:
        """A fresh copy of the frame prefix's KV cache for `batch` rows (passes extend it), or None."""
        prefix = self.frame.prefix_ids
        if not prefix:
            return None
        key = (id(self.active_model), prefix)
        if key not in self._frame_caches:
            embeds = self.embed_ids(torch.tensor([prefix], device=self.device))  # (1, P, D)
            self.tokens.add(embeds, recorded=False)
            with torch.no_grad():
                out = self.active_model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
            self._frame_caches[key] = returned_cache(out)
        past = copy.deepcopy(self._frame_caches[key])
        if batch > 1:
            past.batch_repeat_interleave(batch)
        return past

    @torch.no_grad()
    def prefix_cache(self, prefix_embeds: torch.Tensor) -> Any:
        """Keys and values of the frame prefix and a fixed prompt prefix (1, P, D), computed once and reused,
        through `prompt_prefix_past`, for every prompt that starts with it."""
        self.tokens.add(prefix_embeds)
        past = self._prefix_past(1)
        out = self.active_model(inputs_embeds=prefix_embeds, use_cache=True, logits_to_keep=1,
                                **cache_kwargs(self.active_model, past))
        return returned_cache(out)

    def prompt_prefix_past(self, cache: Any, length: int, batch: int) -> Any:
        """A `prefix_cache` cut to the frame prefix and the prompt's first `length` positions, for `batch` rows: the
        `past` of target passes on prompts that share those positions (candidates of a discrete search differ
        from the current prompt from some position on, so the positions before it cost nothing)."""
        past = copy.deepcopy(cache)
        surplus = past.get_seq_length() - len(self.frame.prefix_ids) - length
        if surplus:
            past.crop(-surplus)  # a negative crop removes that many positions in every transformers 4.4x-5.x
        past.batch_repeat_interleave(batch)
        return past

    def rollout_logits(
        self, prompt_embeds: torch.Tensor, steps: int, feed: Feedback | None = None, *, need_hidden: bool = False
    ) -> torch.Tensor:
        """Free-running rollout of `steps` positions after [prefix ; prompt ; suffix] -> logits (B, T, V_out).

        `feed` turns each step's logits into the next input; None is hard greedy feedback (no gradient
        through the fed-back tokens, gradient still reaches the prompt through the KV cache).
        """
        feed = feed or self.greedy_feedback
        # The whole rollout is backpropagated when the prompt needs a gradient (through the KV cache).
        recorded = prompt_embeds.requires_grad and torch.is_grad_enabled()
        inputs = self._in_frame(prompt_embeds)
        self.tokens.add(inputs, recorded=recorded)
        past = self._prefix_past(prompt_embeds.shape[0])
        out = self.active_model(inputs_embeds=inputs, use_cache=True, logits_to_keep=1,
                                output_hidden_states=need_hidden, **cache_kwargs(self.active_model, past))
        logits = [out.logits[:, -1]]
        for step in range(1, steps):
            hidden = out.hidden_states[-1][:, -1] if need_hidden else None
            inputs = feed(logits[-1], step - 1, hidden)  # (B, 1, D)
            self.tokens.add(inputs, recorded=recorded)
            out = self.active_model(inputs_embeds=inputs, use_cache=True, output_hidden_states=need_hidden,
                                    **cache_kwargs(self.active_model, returned_cache(out)))
            logits.append(out.logits[:, -1])
        return torch.stack(logits, dim=1).float()  # (B, T, V_out)

    def sequence_logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """One pass over input embeddings (B, n, D) after the frame's prefix -> logits at every position
        (B, n, V_out)."""
        self.tokens.add(embeds)
        past = self._prefix_past(embeds.shape[0])
        out = self.active_model(inputs_embeds=embeds, use_cache=past is not None,
                                **cache_kwargs(self.active_model, past))
        return out.logits.float()

    def greedy_feedback(self, logits: torch.Tensor, step: int, hidden: torch.Tensor | None) -> torch.Tensor:
        return self.embed_ids(logits.detach().argmax(-1)).unsqueeze(1)  # (B, 1, D)

    def relaxed_feedback_embeds(self, probs: torch.Tensor) -> torch.Tensor:
        """Relaxed output distribution (B, V_out) -> fed-back embedding (B, 1, D) over the full vocabulary."""
        weight = self.embedding.detach()[: probs.shape[-1]]
        return (probs.to(weight.dtype) @ weight).unsqueeze(1)

    @torch.no_grad()
    def greedy_generate(self, prompt_ids: torch.Tensor, steps: int) -> torch.Tensor:
        """Greedy continuation of discrete prompts (B, L) in the frame -> ids (B, T); never stops at EOS."""
        prompt_ids = prompt_ids.to(self.device)
        return self.rollout_logits(self.embed_ids(prompt_ids), steps).argmax(-1)


def compile_decoder_layers(model: Any) -> None:
    """torch.compile every decoder layer in place (inductor fuses the norms, rotary, SwiGLU and residual
    arithmetic around the matmuls); the whole model would take minutes to compile for no further gain."""
    if model.device.type == "cpu" and not has_cxx_compiler():
        raise RuntimeError("compile_model=True needs a C++ compiler (g++ or clang++) for torch.compile on a CPU")
    for layer in decoder_layers(model):
        layer.compile(dynamic=False)


def has_cxx_compiler() -> bool:
    """Whether inductor can build its CPU kernels here."""
    return bool(shutil.which("g++") or shutil.which("clang++"))


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The repeated blocks of a HF causal LM (`layers` of Llama-style decoders, `h` of GPT-2-style ones)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    for name in ("layers", "h", "blocks"):
        blocks = getattr(decoder, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ValueError(f"compile_model: cannot find the decoder layers of {type(model).__name__}")


def _visible(text: str) -> str:
    # Decoding may add or drop spaces and normalise Unicode forms; only characters that vanish lose content.
    return "".join(unicodedata.normalize("NFKC", text).split())


def as_softlm(model: str | LoadedModel | SoftLM | torch.nn.Module | None, *, tokenizer: Any = None,
              device: str = "cpu", dtype: str = "float32") -> SoftLM:
    """Accept a model name/path (None = embedded default), a LoadedModel, a ready SoftLM, or an already loaded
    Hugging Face model with its `tokenizer` (put in eval mode with its parameters frozen: only the prompt is
    optimised; `device` and `dtype` are then the model's own)."""
    if isinstance(model, torch.nn.Module):
        if tokenizer is None:
            raise ValueError(f"a loaded model ({type(model).__name__}) needs its tokenizer: pass tokenizer=...")
        return SoftLM(freeze(model), tokenizer)
    if tokenizer is not None:
        raise ValueError("tokenizer= goes with a loaded model object, not with a model name or a SoftLM")
    if isinstance(model, SoftLM):
        return model
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    return SoftLM(loaded.model, loaded.tokenizer, name=loaded.name)
