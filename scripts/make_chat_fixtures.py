#!/usr/bin/env python3
"""Generate the chat-template fixture: conversations rendered by Hugging Face's
`apply_chat_template` with the templates the supported model families ship.

A developer tool, never a test dependency: the fixture is committed and the Swift tests only
read it. It runs in the reference virtualenv (see refvenv.py; transformers, tokenizers and
jinja2 are all it uses):

    python3 scripts/make_chat_fixtures.py [--out REPO_ROOT]

For each layout the tool renders (ChatML as SmolLM2 and Qwen2 write it, Llama 2 chat,
Mistral Instruct v0.1, Zephyr as TinyLlama chat writes it, Llama 3 Instruct), the template
text below is the one in the model's tokenizer_config.json. Each conversation is rendered
with and without the generation prompt (`tokenize=False`), and where the fixture tokenizers
have the layout's markers also tokenized (`tokenize=True`, which adds no special tokens):
ChatML with SmolLM2's tokenizer, the SentencePiece layouts with the tiny Llama 2 one of
make_spm_tokenizer_fixtures.py. A template that raises (roles that do not alternate, a system
message in Mistral's) is recorded with its message.

Fixture: Tests/LoRAFormatsTests/Fixtures/chat-templates.json
    {"versions", "templates": {format: jinja}, "cases": [{"format", "messages",
     "add_generation_prompt", "text" | "error", "tokenizer", "ids"}]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refvenv  # noqa: E402

refvenv.ensure_venv(
    __file__, "SLD_REF_VENV", "/tmp/sld-ref-venv", ["transformers", "tokenizers", "jinja2"],
    ["transformers", "tokenizers", "jinja2"])

import jinja2  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

TEMPLATES = {
    # Qwen2-Instruct / SmolLM2-Instruct without the default system message.
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
        " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
        "{% endif %}"),
    # meta-llama/Llama-2-7b-chat-hf
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
    # mistralai/Mistral-7B-Instruct-v0.1
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
        "{% endfor %}"),
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr's layout)
    "zephyr": (
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
        "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
        "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
        "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [m("user", "Hello!")],
    [m("system", "You answer in one word."), m("user", "Capital of France?"), m("assistant", "Paris.")],
    [m("user", "2+2?"), m("assistant", "  4\n"), m("user", " and 3+3? "), m("assistant", "6")],
    [m("system", "Be brief."), m("user", "Grüße, 世界 🙂  two  spaces"), m("assistant", "Ça va?\tOui.")],
    [m("user", "a"), m("user", "b")],
    [m("assistant", "I speak first.")],
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    fixtures = Path(args.out) / "Tests" / "LoRAFormatsTests" / "Fixtures"
    tokenizer_files = {
        "smollm2": (fixtures / "tokenizer-smollm2.json", "<|im_start|>", "<|im_end|>"),
        "spm-llama2": (fixtures / "tokenizer-spm-llama2.json", "<s>", "</s>"),
    }
    uses = {"chatml": "smollm2", "llama2": "spm-llama2", "mistral": "spm-llama2", "zephyr": "spm-llama2",
            "llama3": None}
    cases = []
    for name, template in TEMPLATES.items():
        tokenizer_name = uses[name]
        if tokenizer_name:
            path, bos, eos = tokenizer_files[tokenizer_name]
        else:
            path, bos, eos = tokenizer_files["smollm2"][0], "<|begin_of_text|>", "<|end_of_text|>"
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token=bos, eos_token=eos)
        tok.chat_template = template
        for messages in CONVERSATIONS:
            for generation in (False, True):
                case = {"format": name, "messages": messages, "add_generation_prompt": generation,
                        "tokenizer": tokenizer_name}
                try:
                    case["text"] = tok.apply_chat_template(
                        messages, tokenize=False, add_generation_prompt=generation)
                    if tokenizer_name:
                        ids = tok.apply_chat_template(
                            messages, tokenize=True, add_generation_prompt=generation, return_dict=False)
                        case["ids"] = [int(i) for i in ids]
                except jinja2.exceptions.TemplateError as error:
                    case["error"] = str(error)
                cases.append(case)
    out = fixtures / "chat-templates.json"
    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "jinja2": jinja2.__version__}
    out.write_text(json.dumps({"versions": versions, "templates": TEMPLATES, "cases": cases},
                              ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out}: {len(cases)} cases ({sum('error' in c for c in cases)} raise)")


if __name__ == "__main__":
    main()
