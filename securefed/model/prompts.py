"""A causal LM's prompt in the model's chat template, where it has one.

An instruct model (SmolLM2-135M-Instruct) was tuned on its chat format: the task's prompt is the
user's turn, the assistant's turn is opened (``add_generation_prompt``), and the scored answer
is the first thing the assistant says, so its leading space goes (``continuation``). A
tokenizer without a chat template (a base model) reads the plain prompt with its own special
tokens, and the answer continues it after a space, as the task writes it.
"""

from __future__ import annotations


def has_chat_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def prompt_text(tok, text: str) -> str:
    """The prompt as the model reads it, ending right before the answer."""
    if not has_chat_template(tok):
        return text
    messages = [{"role": "user", "content": text}]
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def special_tokens(tok) -> bool:
    """Whether tokenizing ``prompt_text`` adds special tokens (a chat template writes its own)."""
    return not has_chat_template(tok)


def continuation(tok, text: str) -> str:
    """The answer text as it follows ``prompt_text``: without its leading space in a chat turn."""
    return text.lstrip() if has_chat_template(tok) else text
