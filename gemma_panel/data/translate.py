"""Translators for back translation: anything with
``translate(texts, source_lang, target_lang) -> texts``.

- `GemmaTranslator` prompts a loaded Gemma (a KerasHub causal LM, e.g. from
  ``gemma_panel.models.load_model``): the user turn asks for a translation and the model
  turn is opened with a few example pairs, so that base (pre-trained) checkpoints, which
  do not follow instructions, continue the pattern, and instruction-tuned ones do too.
- `HuggingFaceTranslator` runs local Hugging Face translation models (a folder per
  language pair, such as Marian opus-mt models, or one multilingual model such as NLLB
  or M2M100) with ``transformers``; nothing is downloaded.
- `KerasHubTranslator` wraps any KerasHub model with ``generate(list[str])``, such as a
  ``Seq2SeqLM``.
- `FunctionTranslator` turns a plain function into a translator (an API client, a cache).

Languages are ISO 639-1 codes (``"en"``) or English names (``"English"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from gemma_panel.data.report import DatasetError


@runtime_checkable
class Translator(Protocol):
    """Translates a batch of texts; returns one text per input, "" where it failed."""

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        ...


LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian",
    "tr": "Turkish", "ar": "Arabic", "hi": "Hindi", "ja": "Japanese", "ko": "Korean",
    "zh": "Chinese", "sv": "Swedish", "cs": "Czech", "el": "Greek", "id": "Indonesian",
}

# Example pairs that open the model's turn (written for this project). Row i is the same
# sentence in every language.
_SHOTS = {
    "English": ["Good morning.", "I like cheese.", "How old are you?"],
    "French": ["Bonjour.", "J'aime le fromage.", "Quel âge as-tu ?"],
    "German": ["Guten Morgen.", "Ich mag Käse.", "Wie alt bist du?"],
    "Spanish": ["Buenos días.", "Me gusta el queso.", "¿Cuántos años tienes?"],
    "Italian": ["Buongiorno.", "Mi piace il formaggio.", "Quanti anni hai?"],
    "Portuguese": ["Bom dia.", "Eu gosto de queijo.", "Quantos anos você tem?"],
}

_QUOTES = {('"', '"'), ("'", "'"), ("“", "”"), ("«", "»"), ("„", "“")}
_CONTROL = re.compile(r"<(?:start_of_turn|end_of_turn|eos|bos|pad)>")


def language_name(lang: str) -> str:
    """``"fr"`` -> ``"French"``; a name is returned as it is."""
    return LANGUAGES.get(lang.lower(), lang) if len(lang) <= 3 else lang


def language_code(lang: str) -> str:
    """``"French"`` -> ``"fr"``; a code is returned in lower case."""
    for code, name in LANGUAGES.items():
        if name.lower() == lang.lower():
            return code
    return lang.lower()


def clean_translation(text: str) -> str:
    """A model's answer reduced to the translation: its first line, without control-token
    text, a repeated language label or wrapping quotes; "" when nothing is left."""
    text = _CONTROL.split(text, maxsplit=1)[0]
    text = text.strip().split("\n", 1)[0].strip()
    label = re.match(r"^(\w+)\s*:\s*", text)
    if label and label.group(1) in ("Translation", *LANGUAGES.values()):
        text = text[label.end():]
    if len(text) >= 2 and (text[0], text[-1]) in _QUOTES:
        text = text[1:-1].strip()
    return text


class GemmaTranslator:
    """Translate by prompting a Gemma causal LM (greedy decoding by default).

    The prompt is ``chat_prompt("Translate from A to B.")`` followed, in the model's
    turn, by a few ``A: ...``/``B: ...`` example pairs and then ``A: <text>`` and ``B:``;
    the answer is read up to the end of its line. Multi-line texts are translated line
    by line.

    Quality depends on the model. The bundled Gemma 3 270M is a base model: it
    translates short, plain sentences between major European languages recognisably and
    often paraphrases on the way back (which is what back translation wants), but it
    drifts in meaning, drops content from long sentences, and sometimes answers nothing
    (such rows are skipped). Review a preview before training on the output; a larger
    or instruction-tuned Gemma, or a dedicated translation model, does much better.

    Args:
        causal_lm: a KerasHub ``Gemma3CausalLM``/``GemmaCausalLM`` with its preprocessor.
        sampling: generation options; greedy with a length budget from the input when None.
        shots: open the model's turn with example pairs (where the languages have them).
        max_new_tokens: a cap on generated tokens per line.
    """

    def __init__(self, causal_lm, *, sampling=None, shots: bool = True,
                 max_new_tokens: int = 256):
        self.lm = causal_lm
        self.sampling = sampling
        self.shots = shots
        self.max_new_tokens = max_new_tokens
        self._generator = None

    @property
    def generator(self):
        if self._generator is None:
            from gemma_panel.models.generation import StreamingGenerator

            self._generator = StreamingGenerator(self.lm)
        return self._generator

    def prompt(self, text: str, source_lang: str, target_lang: str) -> str:
        """The full prompt for one line of text."""
        from gemma_panel.models.generation import chat_prompt

        a, b = language_name(source_lang), language_name(target_lang)
        pairs = ""
        if self.shots and a in _SHOTS and b in _SHOTS:
            pairs = "".join(f"{a}: {x}\n{b}: {y}\n" for x, y in zip(_SHOTS[a], _SHOTS[b]))
        return chat_prompt(f"Translate from {a} to {b}.") + pairs + f"{a}: {text}\n{b}:"

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        out = []
        for text in texts:
            lines = [self._line(line, source_lang, target_lang) if line.strip() else line
                     for line in text.split("\n")]
            # A line that came back empty makes the whole text a failure, not a shorter text.
            out.append("" if any(line.strip() and not t for line, t in
                                 zip(text.split("\n"), lines)) else "\n".join(lines))
        return out

    def _line(self, line: str, source_lang: str, target_lang: str) -> str:
        from gemma_panel.models.generation import SamplingOptions

        gen = self.generator
        options = self.sampling
        if options is None:
            n = len(gen.encode_prompt(line))
            options = SamplingOptions(max_new_tokens=min(self.max_new_tokens, 2 * n + 16))
        answer = ""
        for piece in gen.stream(self.prompt(line.strip(), source_lang, target_lang), options):
            answer += piece
            if "\n" in answer.lstrip():  # the line is done; the model would go on with pairs
                break
        return clean_translation(answer)


class HuggingFaceTranslator:
    """Local Hugging Face sequence-to-sequence translation models (``transformers``).

    Each model is a local folder with its tokenizer (``AutoTokenizer`` and
    ``AutoModelForSeq2SeqLM``, ``local_files_only``: nothing is downloaded). transformers
    5 removed the ``translation`` pipeline, so this calls ``generate`` itself (greedy).

    Args:
        models: ``{("en", "fr"): "/models/opus-mt-en-fr", ("fr", "en"): ...}``: a folder
            (or a loaded ``(tokenizer, model)`` pair) per language pair, e.g. Marian
            opus-mt models.
        multilingual: one folder (or pair) for every language pair, e.g. NLLB or M2M100;
            the source code is set as the tokenizer's ``src_lang`` and the target's
            language token is forced first. `language_codes` maps our codes to the
            model's (NLLB: ``{"en": "eng_Latn", "fr": "fra_Latn"}``).
        batch_size: texts per ``generate`` call.
        max_new_tokens: per text.
        device: a torch device (``"cpu"``, ``"cuda:0"``).

    Example:

    ```python
    translator = HuggingFaceTranslator({("en", "de"): "opus-mt-en-de/",
                                        ("de", "en"): "opus-mt-de-en/"})
    augment = Augmenter(ops=("back_translate",), translator=translator, pivots=("de",))
    ```
    """

    def __init__(self, models: Mapping[tuple[str, str], Any] | None = None, *,
                 multilingual: Any = None, language_codes: Mapping[str, str] | None = None,
                 batch_size: int = 8, max_new_tokens: int = 256, device: str = "cpu"):
        if not models and multilingual is None:
            raise DatasetError("HuggingFaceTranslator needs models per language pair or "
                               "one multilingual model.")
        self.models = {(language_code(a), language_code(b)): m
                       for (a, b), m in (models or {}).items()}
        self.multilingual = multilingual
        self.language_codes = dict(language_codes or {})
        self.batch_size, self.max_new_tokens, self.device = batch_size, max_new_tokens, device
        self._loaded: dict[str, tuple[Any, Any]] = {}

    def _load(self, model) -> tuple[Any, Any]:
        if isinstance(model, tuple):
            return model
        key = os.fspath(model)
        if key not in self._loaded:
            if not os.path.isdir(key):
                raise DatasetError(f"translation model folder {key} does not exist (models "
                                   "are read from local folders, never downloaded).")
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(key, local_files_only=True)
            network = AutoModelForSeq2SeqLM.from_pretrained(key, local_files_only=True)
            self._loaded[key] = (tokenizer, network.to(self.device).eval())
        return self._loaded[key]

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        if not texts:
            return []
        pair = (language_code(source_lang), language_code(target_lang))
        generate: dict[str, Any] = {}
        if pair in self.models:
            tokenizer, network = self._load(self.models[pair])
        elif self.multilingual is not None:
            tokenizer, network = self._load(self.multilingual)
            src, tgt = (self.language_codes.get(c, c) for c in pair)
            tokenizer.src_lang = src
            lang_id = getattr(tokenizer, "get_lang_id", None)  # M2M100: "fr" -> "__fr__"
            generate["forced_bos_token_id"] = (lang_id(tgt) if lang_id else
                                               tokenizer.convert_tokens_to_ids(tgt))
        else:
            have = ", ".join(f"{a}->{b}" for a, b in self.models) or "none"
            raise DatasetError(f"no translation model for {pair[0]}->{pair[1]}; models are "
                               f"given for {have}.")
        import torch

        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            inputs = tokenizer(batch, return_tensors="pt", padding=True,
                               truncation=True).to(self.device)
            with torch.no_grad():
                ids = network.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                       do_sample=False, num_beams=1, **generate)
            out += [clean_translation(t) for t in
                    tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out


class KerasHubTranslator:
    """A KerasHub model with ``generate(list[str]) -> list[str]`` (a ``Seq2SeqLM`` such as
    ``BartSeq2SeqLM``, or a causal LM), prompted with `template`.

    Args:
        model: the KerasHub task model.
        template: the model input, with ``{source}``, ``{target}`` (language names) and
            ``{text}``; T5-style by default.
        max_length: passed to ``generate``; for a causal LM it counts the prompt too.
    """

    def __init__(self, model, *, template: str = "translate {source} to {target}: {text}",
                 max_length: int = 256):
        self.model, self.template, self.max_length = model, template, max_length

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        if not texts:
            return []
        prompts = [self.template.format(source=language_name(source_lang),
                                        target=language_name(target_lang), text=t)
                   for t in texts]
        outputs = self.model.generate(prompts, max_length=self.max_length)
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        # Causal LMs echo the prompt before the answer.
        return [clean_translation(o.removeprefix(p))
                for p, o in zip(prompts, outputs)]


class FunctionTranslator:
    """``FunctionTranslator(fn)`` where ``fn(texts, source_lang, target_lang) -> texts``."""

    def __init__(self, fn: Callable[[list[str], str, str], Sequence[str]]):
        self.fn = fn

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        return [str(t) for t in self.fn(list(texts), source_lang, target_lang)]
