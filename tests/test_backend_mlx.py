"""The MLX backend, run for real on a tiny random-weight Llama the tests build themselves (no downloads).

The weights are random, but whether the model ends by itself does not depend on luck: hidden
dimension 0 of the residual stream is a constant positive value (every embedding row holds it and
no layer writes to it), and the end-of-sequence row of the output head reads only that dimension.
So EOS is either never sampled (``eos="never"``) or always sampled (``eos="always"``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd, StreamItem
from slmchat.infra.backends.mlx import MlxBackend, _merge_system
from slmchat.infra.errors import BackendUnavailable, ModelNotFound

pytest.importorskip("mlx_lm")
mx = pytest.importorskip("mlx.core")
tree_flatten = pytest.importorskip("mlx.utils").tree_flatten
llama = pytest.importorskip("mlx_lm.models.llama")
tk = pytest.importorskip("tokenizers")

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
CONTEXT = 2048
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}" + TEMPLATE
)
CORPUS = [
    "hello world, how are you today?",
    "the quick brown fox jumps over the lazy dog.",
    "user: hi there\nassistant: hello! what can I do for you?",
    "Small models answer fast; large models answer well.",
]
CHAT = [Message("system", "Be brief."), Message("user", "hello, how are you?")]


def _write_tokenizer(folder: Path, chat_template: str | None) -> None:
    tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[BOS, EOS, UNK],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.save(str(folder / "tokenizer.json"))
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "model_max_length": CONTEXT,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _build_model(folder: Path, eos: str, chat_template: str | None = TEMPLATE) -> Path:
    """A two-layer Llama with random weights, a BPE tokenizer and a chat template, as MLX loads it."""
    folder.mkdir(parents=True)
    _write_tokenizer(folder, chat_template)
    vocab = tk.Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    eos_id = tk.Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id(EOS)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab,
        "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": eos_id,
    }
    (folder / "config.json").write_text(json.dumps(config))
    mx.random.seed(1234)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    # dimension 0 of the residual stream: 8.0 from every embedding, untouched by the layers
    weights["model.embed_tokens.weight"][:, 0] = 8.0
    for layer in range(config["num_hidden_layers"]):
        weights[f"model.layers.{layer}.self_attn.o_proj.weight"][0, :] = 0.0
        weights[f"model.layers.{layer}.mlp.down_proj.weight"][0, :] = 0.0
    head = weights["lm_head.weight"]
    head[:, 0] = 0.0
    head[eos_id, :] = 0.0
    head[eos_id, 0] = -1000.0 if eos == "never" else 1000.0
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that never ends by itself: every answer runs to max_tokens."""
    return _build_model(tmp_path_factory.mktemp("mlx") / "tiny-llama", eos="never")


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> Iterator[MlxBackend]:
    """The never-ending model, loaded once for the module."""
    backend = MlxBackend(str(model_dir))
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.aclose())


def _variant(model_dir: Path, target: Path, chat_template: str | None) -> Path:
    """The same weights with another tokenizer config."""
    shutil.copytree(model_dir, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    if chat_template is not None:
        config["chat_template"] = chat_template
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


async def _collect(
    stream: AsyncIterator[StreamItem], cancel: CancelToken | None = None
) -> tuple[list[str], list[StreamEnd]]:
    deltas: list[str] = []
    ends: list[StreamEnd] = []
    async for item in stream:
        if isinstance(item, StreamEnd):
            ends.append(item)
            continue
        assert not ends, "nothing may follow the StreamEnd"
        deltas.append(item)
        if cancel is not None:
            cancel.cancel()
    return deltas, ends


def _run(backend: MlxBackend, params: GenParams, messages: list[Message] = CHAT) -> tuple[list[str], StreamEnd]:
    deltas, ends = asyncio.run(_collect(backend.stream(messages, params, CancelToken())))
    assert len(ends) == 1
    return deltas, ends[0]


def _template_tokens(backend: MlxBackend, messages: list[Message]) -> int:
    tokenizer = backend._tokenizer
    text = tokenizer.apply_chat_template([m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_load_reports_progress_and_reads_the_config(model_dir: Path) -> None:
    backend = MlxBackend(str(model_dir))
    assert backend.name == "mlx"
    assert backend.capabilities.exact_token_counts
    assert backend.context_tokens is None
    messages: list[str] = []
    asyncio.run(backend.load(messages.append))
    assert backend.loaded
    assert len(messages) >= 2 and all(isinstance(m, str) and m for m in messages)
    assert any(str(model_dir) in m for m in messages)
    assert backend.context_tokens == CONTEXT
    asyncio.run(backend.aclose())
    assert not backend.loaded


def test_stream_yields_deltas_then_one_end_with_exact_counts(loaded: MlxBackend) -> None:
    deltas, end = _run(loaded, GenParams(max_tokens=12, temperature=0.7, seed=1))
    assert deltas and all(isinstance(d, str) and d for d in deltas)
    usage = end.usage
    assert usage.estimated is False
    assert isinstance(usage.prompt_tokens, int) and isinstance(usage.completion_tokens, int)
    assert usage.prompt_tokens == _template_tokens(loaded, CHAT) > 0
    assert 0 < usage.completion_tokens <= 12


def test_small_max_tokens_ends_with_length(loaded: MlxBackend) -> None:
    _deltas, end = _run(loaded, GenParams(max_tokens=3, temperature=0.0))
    assert end.finish_reason == "length"
    assert end.usage.completion_tokens == 3


def test_end_of_sequence_ends_with_stop(tmp_path: Path) -> None:
    backend = MlxBackend(str(_build_model(tmp_path / "eos-model", eos="always")))
    asyncio.run(backend.load())
    deltas, end = _run(backend, GenParams(max_tokens=50, temperature=0.7))
    assert deltas == []
    assert end.finish_reason == "stop"
    assert end.usage.completion_tokens == 1  # mlx-lm counts the end-of-sequence token


def test_cancel_after_the_first_delta_stops_early(loaded: MlxBackend) -> None:
    cancel = CancelToken()
    stream = loaded.stream(CHAT, GenParams(max_tokens=1500, temperature=0.7), cancel)
    deltas, ends = asyncio.run(_collect(stream, cancel))
    assert len(deltas) == 1  # deltas already in flight when the engine cancels are dropped
    assert len(ends) == 1
    assert ends[0].finish_reason == "cancelled"
    assert ends[0].usage.completion_tokens is not None and 0 < ends[0].usage.completion_tokens < 1500


def test_cancel_before_start_generates_nothing(loaded: MlxBackend) -> None:
    cancel = CancelToken()
    cancel.cancel()
    deltas, ends = asyncio.run(_collect(loaded.stream(CHAT, GenParams(max_tokens=50), cancel)))
    assert deltas == []
    assert [e.finish_reason for e in ends] == ["cancelled"]
    assert ends[0].usage.completion_tokens == 0


def test_abandoned_stream_frees_the_model_for_the_next(loaded: MlxBackend) -> None:
    async def abandon() -> None:
        stream = loaded.stream(CHAT, GenParams(max_tokens=1500), CancelToken())
        async for item in stream:
            assert isinstance(item, str)
            break
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(abandon())
    _deltas, end = _run(loaded, GenParams(max_tokens=4))
    assert end.finish_reason == "length"


def test_a_stream_cancelled_while_queued_ends_without_waiting(loaded: MlxBackend) -> None:
    async def scenario() -> tuple[list[StreamItem], list[str], list[StreamEnd]]:
        cancel_first, cancel_queued = CancelToken(), CancelToken()
        first = loaded.stream(CHAT, GenParams(max_tokens=100_000), cancel_first)
        assert isinstance(await first.__anext__(), str)  # the first stream holds the MLX thread
        queued = asyncio.create_task(_collect(loaded.stream(CHAT, GenParams(max_tokens=5), cancel_queued)))
        await asyncio.sleep(0.1)
        cancel_queued.cancel()
        deltas, ends = await asyncio.wait_for(queued, timeout=5)
        cancel_first.cancel()
        return [item async for item in first], deltas, ends

    rest, deltas, ends = asyncio.run(scenario())
    assert deltas == []
    assert [(e.finish_reason, e.usage.completion_tokens) for e in ends] == [("cancelled", 0)]
    assert ends[0].usage.prompt_tokens == _template_tokens(loaded, CHAT)
    assert isinstance(rest[-1], StreamEnd) and rest[-1].finish_reason == "cancelled"


def test_aclose_ends_the_stream_in_flight_and_the_next_stream_loads_again(model_dir: Path) -> None:
    backend = MlxBackend(str(model_dir))

    async def scenario() -> list[StreamItem]:
        await backend.load()
        stream = backend.stream(CHAT, GenParams(max_tokens=100_000), CancelToken())
        items: list[StreamItem] = [await stream.__anext__()]
        await asyncio.wait_for(backend.aclose(), timeout=5)
        assert not backend.loaded
        items += [item async for item in stream]
        return items

    items = asyncio.run(scenario())
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "cancelled"
    assert _run(backend, GenParams(max_tokens=2))[1].finish_reason == "length"  # loads on demand
    assert backend.loaded


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_streams_do_not_leak_threads(loaded: MlxBackend) -> None:
    def threads() -> int:
        return len(list(Path("/proc/self/task").iterdir()))

    _run(loaded, GenParams(max_tokens=2))
    before = threads()
    for _ in range(8):
        _run(loaded, GenParams(max_tokens=2))
    assert threads() - before <= 2  # MLX work on a new thread each time leaked two per answer


def test_exit_during_generation_does_not_abort(model_dir: Path, tmp_path: Path) -> None:
    """MLX aborts the process if its thread is still busy when Python finalizes; exit parks it first."""
    script = tmp_path / "exit_mid_answer.py"
    script.write_text(
        "import asyncio, sys, threading, time\n"
        "from slmchat.infra.backends.base import CancelToken, GenParams, Message\n"
        "from slmchat.infra.backends.mlx import MlxBackend\n"
        "backend = MlxBackend(sys.argv[1])\n"
        "asyncio.run(backend.load())\n"
        "async def answer():\n"
        "    async for _ in backend.stream([Message('user', 'hi')], GenParams(max_tokens=100_000), "
        "CancelToken()):\n"
        "        pass\n"
        "threading.Thread(target=lambda: asyncio.run(answer()), daemon=True).start()\n"
        "time.sleep(0.3)\n"
        "print('bye')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script), str(model_dir)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "bye"


def test_same_seed_gives_the_same_text(loaded: MlxBackend) -> None:
    params = GenParams(max_tokens=10, temperature=1.0, seed=7)
    assert "".join(_run(loaded, params)[0]) == "".join(_run(loaded, params)[0])


def test_count_tokens_is_exact_after_load(model_dir: Path, loaded: MlxBackend) -> None:
    text = "hello world, how are you today?"
    fresh = MlxBackend(str(model_dir))
    assert fresh.count_tokens(text)[1] is True  # not loaded: the estimate
    count, estimated = loaded.count_tokens(text)
    assert estimated is False
    assert count == len(loaded._tokenizer.encode(text, add_special_tokens=False)) > 0
    assert loaded.count_tokens("")[0] == 0


def test_without_chat_template_a_plain_transcript_is_used(model_dir: Path, tmp_path: Path) -> None:
    backend = MlxBackend(str(_variant(model_dir, tmp_path / "no-template", chat_template=None)))
    asyncio.run(backend.load())
    assert not backend._tokenizer.has_chat_template
    _deltas, end = _run(backend, GenParams(max_tokens=3))
    transcript = "system: Be brief.\nuser: hello, how are you?\nassistant:"
    assert end.usage.prompt_tokens == len(backend._tokenizer.encode(transcript))


def test_template_without_system_role_gets_it_folded_into_the_user_turn(model_dir: Path, tmp_path: Path) -> None:
    backend = MlxBackend(str(_variant(model_dir, tmp_path / "no-system", chat_template=NO_SYSTEM_TEMPLATE)))
    asyncio.run(backend.load())
    _deltas, end = _run(backend, GenParams(max_tokens=3))
    assert end.usage.prompt_tokens == _template_tokens(backend, _merge_system(CHAT))
    assert _merge_system(CHAT) == [Message("user", "Be brief.\n\nhello, how are you?")]


def test_missing_folder_is_model_not_found(tmp_path: Path) -> None:
    backend = MlxBackend(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(backend.load())
    assert "does not exist" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("make", ["empty-folder", "file", "no-weights"])
def test_incomplete_model_is_model_not_found(model_dir: Path, tmp_path: Path, make: str) -> None:
    target = tmp_path / make
    if make == "empty-folder":
        target.mkdir()
    elif make == "file":
        target.write_text("not a model")
    else:
        shutil.copytree(model_dir, target)
        (target / "model.safetensors").unlink()
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(MlxBackend(str(target)).load())
    assert info.value.hint


def test_broken_weights_are_model_not_found_with_a_hint(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "broken"
    shutil.copytree(model_dir, target)
    (target / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(MlxBackend(str(target)).load())
    assert str(target) in info.value.message and info.value.hint


def test_uncached_hub_repo_offline_is_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    progress: list[str] = []
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(MlxBackend("slmchat-tests/not-a-cached-model").load(progress.append))
    assert "Hugging Face cache" in info.value.message
    assert info.value.hint and "HF_HUB_OFFLINE" in info.value.hint
    assert any("Hugging Face" in m for m in progress)


def test_without_mlx_the_backend_is_unavailable(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlx_lm", None)
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(MlxBackend(str(model_dir)).load())
    assert info.value.hint and "pip install" in info.value.hint
