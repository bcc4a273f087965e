"""Configuration: one TOML file, validated by pydantic, with ``SLMCHAT_*`` overrides.

Environment overrides: ``SLMCHAT_<KEY>`` for top-level keys and ``SLMCHAT_<SECTION>__<KEY>``
for keys in a section (``SLMCHAT_SMALL__MODEL=ollama:llama3.2:3b``). Values are parsed as TOML
values when they can be (numbers, booleans), else taken as strings. Errors name the file or
the variable, the key and what was expected. (pydantic-settings can read TOML and the
environment too, but its errors cannot say which of the two a bad value came from.)
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slmchat.infra import paths
from slmchat.infra.backends import parse_model_name
from slmchat.infra.backends.names import quoted, shorten
from slmchat.infra.errors import ConfigError, SlmchatError

ENV_PREFIX = "SLMCHAT_"
#: variables that choose files or the key store rather than set config keys
PATH_VARIABLES = {
    "SLMCHAT_CONFIG",
    "SLMCHAT_CONFIG_DIR",
    "SLMCHAT_DATA_DIR",
    "SLMCHAT_KEYRING",  # which key store (slmchat.infra.keys), not a config key
    "SLMCHAT_KEYRING_PASSPHRASE",
}
#: short names for keys that users set often; the value is taken as a plain string
ENV_ALIASES = {"SLMCHAT_MEMORY_URL": ("memory", "url")}
OPTIONS_HINT = "see docs/backends.md for each backend's options"


class TierConfig(BaseModel):
    """One tier (``small`` or ``large``): which model, where, and how to sample."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="backend:model, or an alias from [aliases]")
    base_url: str | None = Field(None, description="server URL for ollama and openai backends")
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key itself)"
    )
    timeout_s: float = Field(60.0, gt=0, description="seconds to wait for a server before giving up")
    max_tokens: int = Field(512, gt=0, description="longest answer, in tokens")
    temperature: float = Field(0.2, ge=0, le=2, description="sampling temperature; small models want it low")
    seed: int | None = Field(None, description="sampling seed, for reproducible answers")
    context_tokens: int | None = Field(
        None, gt=0, description="history budget in tokens; default: what the model's window leaves"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings (n_ctx, n_threads)")
    usd_per_mtok_in: float | None = Field(None, ge=0, description="price of a million prompt tokens, USD")
    usd_per_mtok_out: float | None = Field(None, ge=0, description="price of a million completion tokens, USD")
    usd_per_hour: float | None = Field(
        None, ge=0, description="for a local model: what an hour of the machine costs (instead of per-token prices)"
    )

    @field_validator("options")
    @classmethod
    def _no_keys(cls, options: dict[str, Any]) -> dict[str, Any]:
        if any("key" in name.lower() and name != "key_provider" for name in options):
            raise ValueError(
                "API keys do not belong in the config: use `slmchat keys set PROVIDER` or an environment variable"
            )
        return options


class RoutingConfig(BaseModel):
    """How the router decides between the tiers."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        None, ge=0, le=1, description="large tier iff score ≥ threshold; default: the shipped calibration"
    )
    long_context_tokens: int = Field(3000, gt=0, description="a conversation longer than this counts as long")
    budget_usd_per_day: float | None = Field(None, ge=0, description="large-tier spend cap per calendar day")
    budget_usd_per_session: float | None = Field(None, ge=0, description="large-tier spend cap per session")


class ToolsConfig(BaseModel):
    """Which tools the model may call, and how hard the agent loop tries."""

    model_config = ConfigDict(extra="forbid")

    enabled: list[str] = Field(
        default_factory=lambda: ["*"],
        description='tool names from installed plugins, or "module:function"; "*" is every installed tool',
    )
    prompt: str = Field("compact", pattern="^(compact|json)$", description="how tools are described to the model")
    constrain: bool = Field(True, description="constrain replies to a valid call or an answer, where supported")
    max_steps: int = Field(
        1, ge=1, le=20, description="tool calls per turn before the model must answer (raise it for capable models)"
    )
    recovery_budget: int = Field(2, ge=0, le=10, description="recoveries per turn before a step goes to the large tier")
    ground: bool = Field(
        True, description="drop a call none of whose required values is in the user's words (it was not asked for)"
    )
    fill_named: bool = Field(
        True, description='an optional parameter the question names must be filled ("in Celsius" fills a unit)'
    )
    approve: str = Field(
        "ask", pattern="^(ask|always|never)$", description="tools that require approval: ask, always run, never run"
    )


class MemoryConfig(BaseModel):
    """Long-term memory: where it is stored, and how much of it a turn recalls."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="recall before each turn and remember after it")
    url: str | None = Field(None, description="a Chroma server (http://host:port) shared between machines")
    path: Path | None = Field(None, description="the embedded database folder; default: memory/ in the data dir")
    recall_k: int = Field(5, ge=1, le=50, description="most facts and past exchanges recalled per turn")
    recall_facts: int = Field(3, ge=0, le=50, description="of those, slots for facts (exchanges fill the rest)")
    recall_tokens: int = Field(256, ge=16, description="most prompt tokens recall may add")
    min_similarity: float = Field(0.2, ge=-1, le=1, description="recalled items are at least this similar")
    min_exchange_similarity: float = Field(
        0.45, ge=-1, le=1, description="past exchanges are recalled only this similar or more (chat is alike)"
    )
    recency_weight: float = Field(0.1, ge=0, le=1, description="how much newer items are preferred")
    half_life_days: float = Field(30.0, gt=0, description="age at which the recency bonus halves")
    extract: bool = Field(True, description="extract facts about the user from each message (small model)")
    store_exchanges: bool = Field(True, description="keep each question and answer for recall")
    idle_s: float = Field(
        2.0, ge=0, description="seconds without a turn before memory work (fact extraction) runs; a turn pauses it"
    )
    exit_wait_s: float = Field(
        30.0, ge=0, description="longest wait for memory work when closing; what is left runs in a later session"
    )


class TuiConfig(BaseModel):
    """The terminal app: which face `slmchat` opens, its theme and its keys."""

    model_config = ConfigDict(extra="forbid")

    face: str = Field("app", pattern="^(app|repl)$", description="what `slmchat` alone opens: app (Textual) or repl")
    theme: str = Field("slmchat-dark", description="theme name: built-in or a file in the user themes folder")
    keys: dict[str, str] = Field(
        default_factory=dict, description='remapped keys, action id to keys: force_large = "ctrl+l"'
    )


class Config(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid")

    small: TierConfig = Field(default_factory=lambda: TierConfig(model="llamacpp:smollm2"))
    large: TierConfig | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    system_prompt: str = "You are a helpful assistant. Answer clearly and concisely."
    route: str = Field("auto", pattern="^(auto|small|large)$", description="default route for every turn")
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    tui: TuiConfig = Field(default_factory=TuiConfig)


def _env_overrides() -> dict[tuple[str, ...], tuple[str, Any]]:
    """``{key path: (variable name, value)}`` for every SLMCHAT_* config variable."""
    found: dict[tuple[str, ...], tuple[str, Any]] = {}
    for name, raw in os.environ.items():
        if name in ENV_ALIASES:
            found[ENV_ALIASES[name]] = (name, raw)
            continue
        if not name.startswith(ENV_PREFIX) or name in PATH_VARIABLES:
            continue
        if not raw.strip():  # `SLMCHAT_X=` unsets, as with most programs: the file or the default applies
            continue
        key = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        found[key] = (name, value)
    return found


def _set(tree: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        node = tree.get(part)
        if not isinstance(node, dict):
            node = tree[part] = {}
        tree = node
    tree[key[-1]] = value


def load_config(path: Path | None = None) -> Config:
    """Read, overlay the environment, validate. A missing file means all defaults."""
    path = path or paths.config_file()
    data: dict[str, Any] = {}
    try:
        present = path.exists()
    except OSError as exc:  # a folder on the way that may not be entered
        raise paths.os_problem(exc, path, "cannot read the config", "config") from exc
    if present:
        data = _read(path)
    overrides = _env_overrides()
    from_file = set(_paths(data))
    if "small" not in data and any(key[0] == "small" for key in overrides):
        data["small"] = {"model": Config().small.model}  # tuning the default tier keeps its model
    for key, (_name, value) in overrides.items():
        _set(data, key, value)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        message = _describe(exc, path, overrides, from_file)
        raise ConfigError(message, "see docs/configuration.md for every key") from exc
    if problems := [f"{_source(key, path, overrides, from_file)}: {text}" for key, text in option_problems(config)]:
        raise ConfigError("invalid configuration: " + "; ".join(problems), OPTIONS_HINT)
    return config


def _read(path: Path) -> dict[str, Any]:
    """The file's TOML; a file that is not UTF-8 text is named with the first bad byte and its line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line})",
            "save it as UTF-8, or move it away and run `slmchat config init`",
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file, or see `slmchat config init`") from exc


def option_problems(config: Config) -> list[tuple[tuple[str, ...], str]]:
    """``(key path, "small.options.n_ctx: what is wrong")`` for each bad backend option of each tier.

    The backend comes from the tier's model name; a name that does not resolve is reported when
    the tier is used, so its options are not checked here.
    """
    found = []
    for tier in ("small", "large"):
        cfg = getattr(config, tier)
        if cfg is None or not cfg.options:
            continue
        try:
            backend = parse_model_name(cfg.model, config.aliases).backend
        except SlmchatError:
            continue
        from slmchat.infra.backends.options import check_options  # pydantic models: only when options are set

        for problem in check_options(backend, cfg.options):
            found.append(((tier, "options", problem.key), problem.describe(f"{tier}.options")))
    return found


def _paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path in a nested dict, sections included."""
    found = []
    for key, value in tree.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += _paths(value, (*prefix, key))
    return found


def _source(
    key: tuple[str, ...], path: Path, overrides: dict[tuple[str, ...], tuple[str, Any]], from_file: set[tuple[str, ...]]
) -> str:
    """Which variable or file a bad (or missing) key comes from."""
    for k, (name, _value) in overrides.items():
        if key[: len(k)] == k:
            return name
    if key[:-1] and key[:-1] not in from_file:  # a section that only the environment created
        names = [name for k, (name, _v) in overrides.items() if k[: len(key) - 1] == key[:-1]]
        if names:
            return ", ".join(sorted(names))
    return str(path)


def _describe(
    exc: ValidationError, path: Path, overrides: dict[tuple[str, ...], tuple[str, Any]], from_file: set[tuple[str, ...]]
) -> str:
    problems = []
    for error in exc.errors():
        key = tuple(str(part) for part in error["loc"])
        source = _source(key, path, overrides, from_file)
        what = error["msg"]
        if error["type"] == "extra_forbidden":
            what = "unknown key"
        shown = shorten(".".join(key))
        got = error.get("input")
        extra = f" (got {quoted(got)})" if error["type"] != "extra_forbidden" and not isinstance(got, dict) else ""
        problems.append(f"{source}: {shown}: {what}{extra}")
    return "invalid configuration: " + "; ".join(problems)


TEMPLATE = """\
# slmchat configuration. Every key is optional; see docs/configuration.md.
# Environment overrides: SLMCHAT_SMALL__MODEL=..., SLMCHAT_LARGE__BASE_URL=..., SLMCHAT_ROUTE=small

# default route for every turn: auto | small | large
route = "auto"
system_prompt = "You are a helpful assistant. Answer clearly and concisely."

[small]
# backend:model. llamacpp:smollm2 is the model that ships with slmchat.
model = "llamacpp:smollm2"
max_tokens = 512
temperature = 0.2
# options = { n_ctx = 2048, n_threads = 4 }

# The large tier is optional. Any OpenAI-compatible server works:
# [large]
# model = "openai:gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"
# base_url = "https://api.openai.com/v1"
# timeout_s = 60

[routing]
# large tier iff score >= threshold; unset = the shipped calibration (see `slmchat route calibrate`)
# threshold = 0.28
long_context_tokens = 3000
# spend caps for the large tier (priced from usd_per_mtok_in/out, else genai-prices); past one, turns run small
# budget_usd_per_day = 1.0
# budget_usd_per_session = 0.25

[tools]
# tools from installed plugins (pip install slmchat-calculator ...) or "module:function"; "*" = all installed
enabled = ["*"]
# compact signatures (fewest tokens) or json (the OpenAI schema); constrain = grammar-constrained replies
prompt = "compact"
constrain = true
max_steps = 1
recovery_budget = 2
# drop a call whose required values appear nowhere in the question (small models call tools for anything)
ground = true
# an optional parameter the question names must be filled ("in Celsius" fills the unit)
fill_named = true
# tools that touch the outside world: ask | always | never
approve = "ask"

[memory]
# facts about you and past exchanges, recalled when relevant (stored in Chroma in the data dir)
enabled = true
# a Chroma server shared between machines (or SLMCHAT_MEMORY_URL):
# url = "http://127.0.0.1:8000"
recall_k = 5
recall_tokens = 256
# a past exchange is recalled only when this similar to the message: chit-chat resembles chit-chat
min_exchange_similarity = 0.45
extract = true
# memory work waits until no turn has run for idle_s seconds (a new turn pauses it); closing waits
# at most exit_wait_s for it, and what is left runs in a later session
idle_s = 2.0
exit_wait_s = 30.0

[tui]
# what `slmchat` alone opens: "app" (the terminal app) or "repl" (the plain chat)
face = "app"
theme = "slmchat-dark"
# [tui.keys]
# force_large = "ctrl+l"

[aliases]
# fast = "ollama:llama3.2:3b"
"""


def write_template(path: Path | None = None, force: bool = False) -> Path:
    """Create a commented config file; refuse to overwrite one unless ``force``."""
    path = path or paths.config_file()
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", "edit it, or pass --force to replace it")
    paths.ensure_dir(path.parent, "config")  # a file in the folder's place is named, not a traceback
    try:
        path.write_text(TEMPLATE, encoding="utf-8")
    except OSError as exc:
        raise paths.os_problem(exc, path, "cannot write the config", "config") from exc
    return path
