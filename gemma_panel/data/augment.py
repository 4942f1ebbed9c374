"""Data augmentation on the user side of training examples: Easy Data Augmentation
(Wei & Zou, 2019: synonym replacement, random insertion, swap, deletion) and back
translation (translate to a pivot language and back, through a pluggable `Translator`).

Augmented examples are new `Example`s marked ``augmented=True`` with their ``origin``
row and the ``augmentation`` that made them; the source file is never touched, the split
keeps them out of validation, and `prepare_dataset` drops any that repeat a validation
prompt. Responses are not augmented: noise in a target teaches the model to produce noise.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from gemma_panel.data.example import Example, near_key
from gemma_panel.data.report import DatasetError
from gemma_panel.data.translate import Translator, language_code

OPS = ("synonym", "insert", "swap", "delete", "back_translate")
Synonyms = Callable[[str], list[str]]

_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")
# Function words carry the grammar; replacing or inserting them breaks sentences.
_STOP = frozenset(["a", "an", "the", "and", "or", "but", "if", "of", "at", "by", "for", "with", "about", "to", "from", "in", "on", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "what", "which", "who", "whom", "not", "no", "so", "than", "too", "very", "can", "will", "just", "do", "does", "did", "has", "have", "had"])


@dataclasses.dataclass(frozen=True)
class Augmenter:
    """Makes `copies` augmented variants of each example's prompt (or text).

    Args:
        ops: which operations to use; each variant applies one, chosen at random.
        rate: the share of words changed in a variant (EDA's alpha), at least one word.
        copies: variants per example.
        seed: the same seed gives the same variants.
        synonyms: word -> synonyms; `wordnet_synonyms()` reads WordNet. Needed for
            ``"synonym"`` and ``"insert"``.
        translator: a `Translator` (e.g. ``GemmaTranslator(load_model())``); needed for
            ``"back_translate"``.
        language: the language of the data (code or name).
        pivots: languages to translate through; successive back-translated copies of
            one example use successive pivots.

    Back translation calls the translator twice per batch of texts (to the pivot, then
    back), not once per row. A round trip that comes back empty, unchanged, or the same
    as another copy is not added.

    Example:

    ```python
    augment = Augmenter(ops=("swap", "delete"), rate=0.1, copies=2)
    for e in augment.preview(examples[:3]):
        print(e.augmentation, e.prompt)
    prepared = prepare_dataset("train.jsonl", augment=augment)

    back = Augmenter(ops=("back_translate",), translator=GemmaTranslator(load_model()),
                     pivots=("fr", "de"), copies=2)
    print(preview_augmentation("train.jsonl", back, rows=3))
    ```
    """

    ops: Sequence[str] = ("swap", "delete")
    rate: float = 0.1
    copies: int = 1
    seed: int = 0
    synonyms: Synonyms | None = None
    translator: Translator | None = None
    language: str = "en"
    pivots: Sequence[str] = ("fr",)

    def __post_init__(self):
        unknown = set(self.ops) - set(OPS)
        if unknown or not self.ops:
            raise DatasetError(f"augmentation ops must be among {', '.join(OPS)}; "
                               f"got {', '.join(self.ops) or 'none'}.")
        if {"synonym", "insert"} & set(self.ops) and self.synonyms is None:
            raise DatasetError("synonym replacement and insertion need a synonym source, "
                               "e.g. synonyms=wordnet_synonyms().")
        if "back_translate" in self.ops:
            if self.translator is None or not hasattr(self.translator, "translate"):
                raise DatasetError("back translation needs a translator, e.g. translator="
                                   "GemmaTranslator(load_model()) or HuggingFaceTranslator(...).")
            if not self.pivots or language_code(self.language) in {
                    language_code(p) for p in self.pivots}:
                raise DatasetError(f"back translation needs pivot languages other than the "
                                   f"data's ({self.language}); got {list(self.pivots)}.")
        if not 0 < self.rate <= 1:
            raise DatasetError(f"augmentation rate must be in (0, 1], not {self.rate}.")

    def __call__(self, examples: Sequence[Example]) -> list[Example]:
        """The augmented examples only (the originals are not repeated)."""
        rng = random.Random(self.seed)
        # One entry per variant, in order: (example, field, op, new text or None while a
        # back translation is pending).
        plan: list[list] = []
        pending: dict[str, list[int]] = {}  # pivot -> indexes into plan
        for example in examples:
            if example.augmented or example.messages:
                continue
            field = "prompt" if example.prompt is not None else "text"
            if field == "text" and example.label is None:
                continue  # plain text is all target: no untrained side to vary
            original = getattr(example, field) or ""
            translations = 0
            for _ in range(self.copies):
                op = rng.choice(list(self.ops))
                if op == "back_translate":
                    pivot = self.pivots[translations % len(self.pivots)]
                    translations += 1
                    pending.setdefault(pivot, []).append(len(plan))
                    plan.append([example, field, f"back_translate:{language_code(pivot)}", None])
                else:
                    plan.append([example, field, op,
                                 apply_op(original, op, self.rate, rng, self.synonyms)])
        for pivot, indexes in pending.items():
            texts = [getattr(plan[i][0], plan[i][1]) or "" for i in indexes]
            for i, text in zip(indexes, self.back_translate(texts, pivot)):
                plan[i][3] = text
        out: list[Example] = []
        next_row = max((e.row for e in examples), default=0) + 1
        seen: set[tuple[int, str]] = set()
        for example, field, op, changed in plan:
            original = getattr(example, field) or ""
            key = (example.row, near_key(changed or ""))
            if not changed or not changed.strip() or changed == original or (
                    op.startswith("back_translate") and (
                        key[1] == near_key(original) or key in seen)):
                continue
            seen.add(key)
            out.append(dataclasses.replace(example, **{field: changed}, row=next_row,
                                           line=None, augmented=True, origin=example.row,
                                           augmentation=op))
            next_row += 1
        return out

    def back_translate(self, texts: Sequence[str], pivot: str) -> list[str]:
        """`texts` translated to `pivot` and back; "" where either direction failed."""
        there = self.translator.translate(list(texts), self.language, pivot)
        _check_count(there, texts, self.language, pivot)
        keep = [i for i, t in enumerate(there) if t and t.strip()]
        back = self.translator.translate([there[i] for i in keep], pivot,
                                         self.language) if keep else []
        _check_count(back, keep, pivot, self.language)
        out = [""] * len(texts)
        for i, text in zip(keep, back):
            out[i] = (text or "").strip()
        return out

    def preview(self, examples: Sequence[Example]) -> list[Example]:
        """What `__call__` would add, for showing before training; nothing is written."""
        return self(examples)


def _check_count(out: Sequence[str], inputs: Sequence, source: str, target: str) -> None:
    if len(out) != len(inputs):
        raise DatasetError(f"the translator returned {len(out)} texts for {len(inputs)} "
                           f"({source} -> {target}); it must return one per input.")


def apply_op(text: str, op: str, rate: float, rng: random.Random,
             synonyms: Synonyms | None = None) -> str:
    """One EDA operation on the words of `text`, changing about `rate` of them."""
    words = text.split(" ")
    n = max(1, round(rate * len(words)))
    if op == "swap" and len(words) > 1:
        for _ in range(n):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
    elif op == "delete" and len(words) > 1:
        drop = set(rng.sample(range(len(words)), min(n, len(words) - 1)))
        words = [w for i, w in enumerate(words) if i not in drop]
    elif op == "synonym" and synonyms:
        candidates = [i for i, w in enumerate(words) if _content_word(w) and synonyms(w)]
        for i in rng.sample(candidates, min(n, len(candidates))):
            words[i] = _match_case(words[i], rng.choice(synonyms(words[i])))
    elif op == "insert" and synonyms:
        candidates = [w for w in words if _content_word(w) and synonyms(w)]
        for _ in range(min(n, len(candidates))):
            words.insert(rng.randrange(len(words) + 1), rng.choice(
                synonyms(rng.choice(candidates))))
    return " ".join(words)


def _content_word(word: str) -> bool:
    return bool(_WORD.match(word)) and word.lower() not in _STOP


def _match_case(original: str, new: str) -> str:
    return new[:1].upper() + new[1:] if original[:1].isupper() else new


# The lexicographer file list of WordNet 3.0 (lexnames(5WN)). Debian's wordnet-base
# ships the database without this file, and nltk's reader opens it.
_LEXNAMES = ["adj.all", "adj.pert", "adv.all"] + [f"noun.{n}" for n in ["Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event", "feeling", "food", "group", "location", "motive", "object", "person", "phenomenon", "plant", "possession", "process", "quantity", "relation", "shape", "state", "substance", "time"]] + [f"verb.{n}" for n in ["body", "change", "cognition", "communication", "competition", "consumption", "contact", "creation", "emotion", "motion", "perception", "possession", "social", "stative", "weather"]] + ["adj.ppl"]
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def wordnet_synonyms(root: str | os.PathLike = "/usr/share/wordnet") -> Synonyms:
    """Synonyms from the WordNet 3.0 database at `root`, read with nltk's WordNet reader.

    Debian's ``wordnet-base`` package installs the database there. Needs ``nltk``.
    """
    try:
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise DatasetError("synonym replacement needs nltk (pip install nltk).") from exc
    root = Path(root)
    if not (root / "data.noun").exists():
        raise DatasetError(f"no WordNet database in {root}: install Debian's wordnet-base, "
                           "or pass the folder that holds data.noun and index.noun.")
    import nltk.data

    folder = _with_lexnames(root)
    # nltk only reads corpora under its data path.
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)

    class LocalWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None  # no mapping to nltk's downloadable copy: this is the database

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        reader = LocalWordNet(folder, None)

    @lru_cache(maxsize=65536)
    def synonyms(word: str) -> list[str]:
        names = {lemma.name().replace("_", " ") for synset in reader.synsets(word.lower())
                 for lemma in synset.lemmas()}
        names.discard(word.lower())
        return sorted(n for n in names if " " not in n)

    return lambda word: synonyms(word)


def _with_lexnames(root: Path) -> str:
    if (root / "lexnames").exists():
        return str(root)
    # A private copy of the database (about 30 MB, made once) plus the missing lexnames
    # file. Copies, not links: nltk refuses files that resolve outside its corpus root.
    folder = Path(tempfile.gettempdir()) / f"gemma_panel_wordnet_{os.getuid()}"
    folder.mkdir(exist_ok=True)
    for f in root.iterdir():
        copy = folder / f.name
        if f.is_file() and (not copy.exists() or copy.stat().st_size != f.stat().st_size):
            shutil.copyfile(f, copy)
    lexnames = "".join(f"{i:02d}\t{name}\t{_LEX_POS[name.split('.')[0]]}\n"
                       for i, name in enumerate(_LEXNAMES))
    (folder / "lexnames").write_text(lexnames)
    return str(folder)
