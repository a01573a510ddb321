"""The fixed text around an optimised prompt: prefix, suffix, a `{prompt}` template or a chat template.

The model reads [prefix ; prompt ; suffix ; target]; only the prompt is optimised. A Frame holds the ids
the search feeds and the text a user would paste, so the judge can re-render the whole context from text
(`render`) and catch prompts whose tokens merge with their neighbours when the text is re-encoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PLACEHOLDER = "{prompt}"
# Stands in for the user message while a chat template renders; split on it to find prefix and suffix.
_SENTINEL = "\u2063softtoken-prompt\u2063"


@dataclass(frozen=True)
class Frame:
    """Token ids (and their text) before and after the prompt; the empty Frame is a bare prompt."""

    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()
    prefix_text: str = ""
    suffix_text: str = ""
    template: str | None = None  # the `{prompt}` template the frame came from (with chat: the user message's)
    chat: bool = False  # rendered through the tokenizer's chat template (the prompt is in the user message)
    system: str | None = None  # the chat's system message; None: whatever the template renders by default

    @property
    def empty(self) -> bool:
        return not (self.prefix_ids or self.suffix_ids)

    def around(self, prompt_ids: list[int]) -> list[int]:
        """The ids the search feeds for `prompt_ids`: prefix + prompt + suffix."""
        return [*self.prefix_ids, *prompt_ids, *self.suffix_ids]

    def render(self, lm: Any, prompt_text: str) -> list[int]:
        """The ids a user gets from the text: the whole context rendered with `prompt_text` in place and
        encoded by `lm` (a SoftLM: its `encode`, and its tokenizer's chat template)."""
        if self.chat:
            return lm.encode(chat_text(lm.tokenizer, fill(self.template or PLACEHOLDER, prompt_text), self.system))
        return lm.encode(self.prefix_text + prompt_text + self.suffix_text)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefix_ids"], data["suffix_ids"] = list(self.prefix_ids), list(self.suffix_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Frame:
        return cls(**{**data, "prefix_ids": tuple(data.get("prefix_ids", ())),
                      "suffix_ids": tuple(data.get("suffix_ids", ()))})


@dataclass(frozen=True)
class FramedTarget:
    """One target of a universal prompt, in its own frame (targets may carry their own context)."""

    target_ids: tuple[int, ...]
    frame: Frame = Frame()


def encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=False).input_ids) if text else ()


def text_frame(tokenizer: Any, prefix: str = "", suffix: str = "") -> Frame:
    """Fixed text before and after the prompt, each encoded on its own."""
    return Frame(prefix_ids=encode(tokenizer, prefix), suffix_ids=encode(tokenizer, suffix),
                 prefix_text=prefix, suffix_text=suffix)


def split_template(template: str) -> tuple[str, str]:
    """The text before and after the one `{prompt}` of a template."""
    count = template.count(PLACEHOLDER)
    if count != 1:
        raise ValueError(f"template must contain exactly one {PLACEHOLDER}, found {count} in {template!r}")
    before, after = template.split(PLACEHOLDER)
    return before, after


def fill(template: str, prompt_text: str) -> str:
    before, after = split_template(template)
    return before + prompt_text + after


def template_frame(tokenizer: Any, template: str) -> Frame:
    """`"Translate: {prompt} =>"`: the text around exactly one `{prompt}` placeholder."""
    return replace(text_frame(tokenizer, *split_template(template)), template=template)


def chat_text(tokenizer: Any, user: str, system: str | None, *, model_name: str = "the model") -> str:
    """The chat template's text for one user message, with the generation prompt the template adds."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model_name} has no chat template; use --prefix/--suffix or --template instead of --chat")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja raises its own TemplateError (e.g. a template without a system role)
        raise ValueError(f"the chat template of {model_name} cannot render these messages: {err}") from err


def chat_frame(tokenizer: Any, system: str | None = None, *, user_template: str = PLACEHOLDER,
               model_name: str = "the model") -> Frame:
    """The prompt inside the user message (`user_template`, default the whole message) of the model's chat
    template, with the generation prompt after it; the target is the assistant's reply."""
    text = chat_text(tokenizer, fill(user_template, _SENTINEL), system, model_name=model_name)
    if text.count(_SENTINEL) != 1:
        raise ValueError(f"the chat template of {model_name} does not render the user message verbatim once")
    prefix, suffix = text.split(_SENTINEL)
    return Frame(prefix_ids=encode(tokenizer, prefix), suffix_ids=encode(tokenizer, suffix), prefix_text=prefix,
                 suffix_text=suffix, template=None if user_template == PLACEHOLDER else user_template, chat=True,
                 system=system)


def check_frame_options(*, prefix: str = "", suffix: str = "", template: str | None = None, chat: bool = False,
                        system: str | None = None) -> None:
    """What can be checked in the frame options without a tokenizer (before any model loads)."""
    for name, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    if template is not None and (prefix or suffix):
        raise ValueError("template already holds the prefix and suffix; give one or the other")
    if template is not None:
        split_template(template)
    if not isinstance(chat, bool):
        raise ValueError(f"chat must be true or false, got {chat!r}")
    if system is not None and not chat:
        raise ValueError("system is a chat message; it needs chat=True (--chat)")


def build_frame(tokenizer: Any, *, prefix: str = "", suffix: str = "", template: str | None = None,
                chat: bool = False, system: str | None = None, model_name: str = "the model") -> Frame:
    """One Frame from the user-facing options. With `chat`, prefix/suffix/template are the text around the
    prompt inside the user message (nanoGCG's `{optim_str}` in a message)."""
    check_frame_options(prefix=prefix, suffix=suffix, template=template, chat=chat, system=system)
    if chat:
        user_template = template if template is not None else prefix + PLACEHOLDER + suffix
        return chat_frame(tokenizer, system, user_template=user_template, model_name=model_name)
    if template is not None:
        return template_frame(tokenizer, template)
    return text_frame(tokenizer, prefix, suffix)
