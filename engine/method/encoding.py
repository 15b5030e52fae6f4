"""The one way a prompt and a response become token ids. Generation, scoring and training all use it,
so a log-prob stored by the judge is exactly the one the trainer would compute."""

from __future__ import annotations

from storage.records import Messages


def prompt_ids(tokenizer, messages: Messages) -> list[int]:
    """Prompt tokens up to where the assistant's answer starts (chat template when the model has one)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(ids)
    text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return list(ids)


def response_ids(tokenizer, text: str) -> list[int]:
    """Response tokens followed by EOS, so that ending the answer is part of what is scored."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids
