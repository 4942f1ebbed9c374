"""Data: from an uploaded file to validated, templated, tokenized training examples.

The public API; implementations live in one module per concept.
"""

from gemma_panel.data.augment import Augmenter, wordnet_synonyms
from gemma_panel.data.check import ReadOptions, check_dataset, head_examples
from gemma_panel.data.columns import ColumnMapping, detect_columns, parse_overrides
from gemma_panel.data.example import Example
from gemma_panel.data.messages import Turn, normalize_messages
from gemma_panel.data.policies import MissingPolicy
from gemma_panel.data.prepare import PreparedDataset, prepare_dataset, preview_augmentation
from gemma_panel.data.readers import FORMATS, open_records
from gemma_panel.data.report import DatasetError, Problem, ValidationReport
from gemma_panel.data.sources import register_remote_opener
from gemma_panel.data.split import find_split_leaks, split_examples
from gemma_panel.data.stats import TokenStatistics
from gemma_panel.data.templates import (
    ClassificationTemplate,
    CompletionTemplate,
    CustomTemplate,
    GemmaChatTemplate,
    Template,
    get_template,
    render_text,
)
from gemma_panel.data.tfds_reader import parse_tfds_source, prepared_datasets, tfds_data_dir
from gemma_panel.data.tokenized import (
    TokenizedExample,
    loss_mask_pieces,
    show_loss_mask,
    tokenize_example,
)
from gemma_panel.data.tokenizer import KerasHubTokenizer, SentencePieceTokenizer, TextTokenizer
from gemma_panel.data.translate import (
    FunctionTranslator,
    GemmaTranslator,
    HuggingFaceTranslator,
    KerasHubTranslator,
    Translator,
    clean_translation,
)

__all__ = [
    "FORMATS",
    "Augmenter",
    "ClassificationTemplate",
    "ColumnMapping",
    "CompletionTemplate",
    "CustomTemplate",
    "DatasetError",
    "Example",
    "FunctionTranslator",
    "GemmaChatTemplate",
    "GemmaTranslator",
    "HuggingFaceTranslator",
    "KerasHubTokenizer",
    "KerasHubTranslator",
    "MissingPolicy",
    "PreparedDataset",
    "Problem",
    "ReadOptions",
    "SentencePieceTokenizer",
    "Template",
    "TextTokenizer",
    "TokenStatistics",
    "TokenizedExample",
    "Translator",
    "Turn",
    "ValidationReport",
    "check_dataset",
    "clean_translation",
    "detect_columns",
    "find_split_leaks",
    "get_template",
    "head_examples",
    "loss_mask_pieces",
    "normalize_messages",
    "open_records",
    "parse_overrides",
    "parse_tfds_source",
    "prepare_dataset",
    "prepared_datasets",
    "preview_augmentation",
    "register_remote_opener",
    "render_text",
    "show_loss_mask",
    "split_examples",
    "tfds_data_dir",
    "tokenize_example",
    "wordnet_synonyms",
]
