"""Back translation: the translator protocol, the Gemma prompt, the adapters, and the
Augmenter/prepare plumbing (marked rows, never in validation, source untouched)."""

from __future__ import annotations

import hashlib
import json

import pytest

from gemma_panel.data import (
    Augmenter,
    FunctionTranslator,
    GemmaTranslator,
    HuggingFaceTranslator,
    KerasHubTranslator,
    Translator,
    clean_translation,
    prepare_dataset,
    preview_augmentation,
)
from gemma_panel.data.example import Example
from gemma_panel.data.report import DatasetError
from gemma_panel.evaluation import token_f1

CHAT_HEAD = "<start_of_turn>user\nTranslate from English to French.<end_of_turn>\n" \
            "<start_of_turn>model\n"


class Recorder:
    """A deterministic fake translator that records its calls: en->xx tags the words,
    xx->en undoes the tag and swaps the first two words (a paraphrase)."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple[list[str], str, str]] = []
        self.fail_on = fail_on

    def translate(self, texts, source_lang, target_lang):
        self.calls.append((list(texts), source_lang, target_lang))
        if source_lang == "en":
            return ["" if self.fail_on and self.fail_on in t else f"[{target_lang}] {t}"
                    for t in texts]
        words = [t.split(" ", 1)[1].split(" ") for t in texts]
        return [" ".join([w[1], w[0], *w[2:]]) if len(w) > 1 else w[0] for w in words]


def test_clean_translation():
    assert clean_translation(" Bonjour le monde.\nEnglish: more") == "Bonjour le monde."
    assert clean_translation("French: « Salut »") == "Salut"
    assert clean_translation("Hallo<end_of_turn>\n<start_of_turn>user") == "Hallo"
    assert clean_translation("Note: keep this") == "Note: keep this"  # not a language label
    assert clean_translation("\n\n") == ""


def test_gemma_prompt_opens_the_model_turn_with_example_pairs():
    translator = GemmaTranslator(causal_lm=None)
    prompt = translator.prompt("The cat sleeps.", "en", "fr")
    assert prompt.startswith(CHAT_HEAD)
    assert "English: Good morning.\nFrench: Bonjour.\n" in prompt
    assert prompt.endswith("English: The cat sleeps.\nFrench:")
    bare = GemmaTranslator(None, shots=False).prompt("x", "German", "Klingon")
    assert bare.endswith("model\nGerman: x\nKlingon:") and "Good morning" not in bare
    assert isinstance(translator, Translator) and isinstance(Recorder(), Translator)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from gemma_panel.models import load_model
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    path = tmp_path_factory.mktemp("bt") / "tiny.gguf"
    write_tiny_gemma_gguf(path, "gemma3", hidden=64, heads=2, kv_heads=1, head_dim=256,
                          ffn=128, layers=2)
    return load_model(str(path), progress=False)


def test_gemma_translator_generates_from_the_prompt_line_by_line(tiny_lm):
    from gemma_panel.models.generation import SamplingOptions

    translator = GemmaTranslator(tiny_lm, max_new_tokens=12)
    gen = translator.generator
    seen: list[tuple[str, int]] = []
    stream = gen.stream
    gen.stream = lambda prompt, options: (seen.append((prompt, options.max_new_tokens))
                                          or stream(prompt, options))
    texts = ["The quick brown fox.", "Numbers: 1 2\nLow-rank adaptation."]
    out = translator.translate(texts, "en", "de")
    # One generation per non-empty line, each prompted with that line and a budget.
    assert [p.rsplit("English: ", 1)[1] for p, _ in seen] == [
        "The quick brown fox.\nGerman:", "Numbers: 1 2\nGerman:",
        "Low-rank adaptation.\nGerman:"]
    assert all(n == 12 for _, n in seen)
    # Each answer is the model's own continuation, cut at its first line and cleaned.
    expected = []
    for text in texts:
        lines = []
        for line in text.split("\n"):
            raw = gen.generate(translator.prompt(line, "en", "de"),
                               SamplingOptions(max_new_tokens=12))
            lines.append(clean_translation(raw))
        expected.append("" if not all(lines) else "\n".join(lines))
    assert out == expected
    assert all("<start_of_turn>" not in t and "German:" not in t for t in out)


def test_prepare_with_the_tiny_gemma_translator_keeps_validation_clean(tiny_lm, tmp_path):
    src = tmp_path / "train.jsonl"
    digest = _write_jsonl(src, 6)
    augment = Augmenter(ops=("back_translate",), translator=GemmaTranslator(
        tiny_lm, max_new_tokens=8), pivots=("de",))
    prepared = prepare_dataset(src, augment=augment, validation_fraction=0.34, seed=0)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    originals = [e for e in prepared.train if not e.augmented]
    augmented = [e for e in prepared.train if e.augmented]
    assert len(prepared.validation) == 2 and len(originals) == 4
    assert not any(e.augmented for e in prepared.validation)
    # The random tiny model answers something for every line, so every row gets a copy.
    assert sorted(e.origin for e in augmented) == sorted(e.row for e in originals)
    assert all(e.augmentation == "back_translate:de" and e.response == f"answer {e.origin - 1}"
               and e.prompt != f"question about topic {e.origin - 1}" for e in augmented)


def test_augmenter_back_translates_in_batches_and_marks_rows():
    examples = [Example(prompt=f"please translate sentence number {i}", response=f"r{i}",
                        row=i + 1) for i in range(3)]
    examples.append(Example(text="a text to classify here", label="pos", row=4))
    examples.append(Example(text="plain completion text is all target", row=5))
    recorder = Recorder(fail_on="number 1")
    augment = Augmenter(ops=("back_translate",), translator=recorder, pivots=("fr", "de"),
                        copies=2)
    out = augment(examples)
    # Two batched calls per pivot (there and back), not two per row.
    assert [(src, tgt, len(texts)) for texts, src, tgt in recorder.calls] == [
        ("en", "fr", 4), ("fr", "en", 3), ("en", "de", 4), ("de", "en", 3)]
    by_origin = {}
    for e in out:
        by_origin.setdefault(e.origin, []).append(e)
    assert sorted(by_origin) == [1, 3, 4]  # row 2 failed to translate; 5 has no user side
    assert by_origin[1][0].prompt == "translate please sentence number 0"
    # Both pivots gave the same paraphrase: the repeat is not added.
    assert [e.augmentation for e in by_origin[1]] == ["back_translate:fr"]
    assert by_origin[4][0].text == "text a to classify here" and by_origin[4][0].label == "pos"
    assert all(e.augmented and e.line is None for e in out)
    assert all(e.response == f"r{e.origin - 1}" for e in out if e.origin < 4)
    assert len({e.row for e in out} | {1, 2, 3, 4, 5}) == 5 + len(out)


def test_augmenter_mixes_back_translation_with_eda_ops():
    examples = [Example(prompt=f"the quick brown fox number {i} jumps", response="r",
                        row=i + 1) for i in range(6)]
    recorder = Recorder()
    out = Augmenter(ops=("swap", "back_translate"), translator=recorder, copies=2,
                    seed=1)(examples)
    kinds = {e.augmentation for e in out}
    assert kinds == {"swap", "back_translate:fr"}
    n_bt = sum(e.augmentation == "back_translate:fr" for e in out)
    assert len(recorder.calls) == 2 and len(recorder.calls[0][0]) >= n_bt > 0
    assert [e.row for e in out] == list(range(7, 7 + len(out)))


def test_augmenter_refuses_bad_back_translation_settings():
    with pytest.raises(DatasetError, match="needs a translator"):
        Augmenter(ops=("back_translate",))
    with pytest.raises(DatasetError, match="pivot languages other than"):
        Augmenter(ops=("back_translate",), translator=Recorder(), language="fr",
                  pivots=("French",))
    short = FunctionTranslator(lambda texts, s, t: texts[:-1])
    with pytest.raises(DatasetError, match="returned 1 texts for 2"):
        Augmenter(ops=("back_translate",), translator=short)(
            [Example(prompt="a b", row=1), Example(prompt="c d", row=2)])


def _write_jsonl(path, n):
    path.write_text("".join(json.dumps({"prompt": f"question about topic {i}",
                                        "response": f"answer {i}"}) + "\n" for i in range(n)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_never_puts_back_translations_in_validation(tmp_path):
    src = tmp_path / "train.jsonl"
    digest = _write_jsonl(src, 20)
    augment = Augmenter(ops=("back_translate",), translator=Recorder())
    prepared = prepare_dataset(src, augment=augment, validation_fraction=0.25, seed=3)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    assert not any(e.augmented for e in prepared.validation)
    val_rows = {e.row for e in prepared.validation}
    augmented = [e for e in prepared.train if e.augmented]
    assert len(augmented) == 15 and not any(e.origin in val_rows for e in augmented)
    assert all(e.prompt.startswith("about question") for e in augmented)
    # Row numbers stay unique across both splits (augmented rows come after every row).
    rows = [e.row for e in prepared.train + prepared.validation]
    assert len(rows) == len(set(rows)) and min(e.row for e in augmented) == 21


def test_prepare_drops_a_back_translation_that_equals_a_validation_prompt(tmp_path):
    src = tmp_path / "train.jsonl"
    _write_jsonl(src, 10)
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"prompt": "Question about topic 3!", "response": "x"}) + "\n")
    # Translating there and back turns every prompt into the validation prompt.
    leaky = FunctionTranslator(lambda texts, s, t: ["question about topic 3"] * len(texts)
                               if t == "en" else texts)
    prepared = prepare_dataset(src, validation_path=val, augment=Augmenter(
        ops=("back_translate",), translator=leaky))
    assert not any(e.augmented for e in prepared.train)
    assert prepared.report.has("augmented_dropped")
    assert "9 augmented row(s) repeated a validation prompt" in prepared.report.to_text()


def test_preview_reads_only_the_first_rows_and_writes_nothing(tmp_path):
    src = tmp_path / "train.jsonl"
    _write_jsonl(src, 3)
    with open(src, "a") as f:  # a broken tail that a preview of 2 rows never reaches
        f.write('{"prompt": "cut off\n' * 200)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    recorder = Recorder()
    preview = preview_augmentation(src, Augmenter(ops=("back_translate",), translator=recorder,
                                                  copies=1), rows=2)
    assert [o.prompt for o, _ in preview] == ["question about topic 0", "question about topic 1"]
    assert [[v.prompt for v in vs] for _, vs in preview] == [["about question topic 0"],
                                                            ["about question topic 1"]]
    assert recorder.calls[0][0] == ["question about topic 0", "question about topic 1"]
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    """A tiny Marian translation model (random weights, a real SentencePiece vocabulary)
    saved as a Hugging Face folder, as opus-mt models are."""
    pytest.importorskip("torch")
    import io

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = tmp_path_factory.mktemp("marian")
    corpus = ["the cat sleeps on the mat", "le chat dort sur le tapis", "good morning",
              "bonjour", "how are you", "comment allez-vous"] * 20
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=proto,
                                   vocab_size=60, model_type="bpe", pad_id=-1, eos_id=-1,
                                   bos_id=-1, unk_id=0, minloglevel=2)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"),
                                str(folder / "vocab.json"))
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1,
                          decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          max_position_embeddings=64, pad_token_id=vocab["<pad>"],
                          eos_token_id=0, decoder_start_token_id=vocab["<pad>"])
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hugging_face_translator_runs_a_local_seq2seq_folder(marian_dir):
    import torch

    translator = HuggingFaceTranslator({("en", "fr"): marian_dir, ("French", "English"):
                                        marian_dir}, batch_size=2, max_new_tokens=6)
    texts = ["the cat sleeps", "good morning", "how are you"]
    out = translator.translate(texts, "English", "fr")
    tokenizer, model = translator._loaded[str(marian_dir)]
    expected = []
    for batch in (texts[:2], texts[2:]):  # what generate gives, batch by batch
        with torch.no_grad():
            ids = model.generate(**tokenizer(batch, return_tensors="pt", padding=True),
                                 max_new_tokens=6, do_sample=False, num_beams=1)
        expected += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert out == expected and len(out) == 3 and all(out)
    assert translator.translate(["bonjour"], "fr", "en")[0]  # the other direction
    with pytest.raises(DatasetError, match="no translation model for en->de; models are "
                                           "given for en->fr, fr->en"):
        translator.translate(["a"], "en", "de")


def test_hugging_face_multilingual_model_forces_the_target_language_token(marian_dir):
    vocab = json.loads((marian_dir / "vocab.json").read_text())
    target = next(p for p in vocab if p.startswith("\u2581") and len(p) > 3)
    translator = HuggingFaceTranslator(multilingual=marian_dir, max_new_tokens=4,
                                       language_codes={"en": "eng_Latn", "xx": target})
    out = translator.translate(["the cat sleeps"], "en", "xx")
    tokenizer, _ = translator._loaded[str(marian_dir)]
    assert tokenizer.src_lang == "eng_Latn"
    assert out[0].startswith(target.lstrip("\u2581")), (target, out)


def test_hugging_face_translator_refuses_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        HuggingFaceTranslator({("en", "fr"): tmp_path / "missing"}).translate(["a"], "en", "fr")
    with pytest.raises(DatasetError, match="needs models"):
        HuggingFaceTranslator()


def test_keras_hub_adapter_formats_prompts_and_strips_echoes():
    class Model:
        def generate(self, prompts, max_length):
            self.prompts = prompts
            return [p + " Hallo Welt" if i == 0 else "Guten Tag" for i, p in enumerate(prompts)]

    model = Model()
    out = KerasHubTranslator(model).translate(["Hello world", "Good day"], "en", "de")
    assert model.prompts == ["translate English to German: Hello world",
                             "translate English to German: Good day"]
    assert out == ["Hallo Welt", "Guten Tag"]


@pytest.mark.slow
def test_real_gemma_270m_back_translation_round_trip(real_model):
    """Gemma 3 270M (a base model) through French and back, on two short sentences."""
    gemma = GemmaTranslator(real_model)
    seen: list[list[str]] = []
    translator = FunctionTranslator(lambda texts, s, t: seen.append(
        out := gemma.translate(texts, s, t)) or out)
    sentences = ["The weather is nice today.", "I would like a cup of tea."]
    augment = Augmenter(ops=("back_translate",), translator=translator, pivots=("fr",))
    back = augment.back_translate(sentences, "fr")
    french = seen[0]
    print("\n".join(f"{s!r} -> {f!r} -> {b!r}" for s, f, b in zip(sentences, french, back)))
    for text in french + back:
        assert text.strip(), (french, back)
        assert "<start_of_turn>" not in text and "<end_of_turn>" not in text
        assert "Translate from" not in text and "English:" not in text
        assert "French:" not in text and "\n" not in text
        assert text not in ("Good morning.", "Bonjour.", "I like cheese.",
                            "J'aime le fromage.")  # not an example pair echoed back
    french_words = {"le", "la", "il", "fait", "beau", "temps", "aujourd'hui", "je",
                    "voudrais", "une", "tasse", "de", "thé", "du", "aimerais"}
    for source, fr, en in zip(sentences, french, back):
        assert fr != source and french_words & set(fr.lower().replace(".", " ").split()), fr
        # The round trip comes back to the sentence's meaning, not just to some English.
        assert token_f1([en], [source]) >= 0.4, (source, fr, en)


def test_keras_hub_translator_with_a_real_keras_hub_model(tiny_lm):
    """Any KerasHub task with ``generate(list[str])`` plugs in; a causal LM echoes the
    prompt, which is cut off."""
    translator = KerasHubTranslator(tiny_lm, template="{source}: {text}\n{target}:",
                                    max_length=64)
    out = translator.translate(["The quick brown fox."], "en", "fr")
    prompt = "English: The quick brown fox.\nFrench:"
    raw = tiny_lm.generate([prompt], max_length=64)[0]
    assert raw.startswith(prompt)
    assert out == [clean_translation(raw[len(prompt):])]
