"""Settings: defaults, every malformed value named in one line, which .env is read, and .env.example
documents them all."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot import config
from bot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456789:" + "A" * 35
REQUIRED = {"TELEGRAM_BOT_TOKEN": TOKEN, "PICWISH_API_KEY": "key-0123456789"}


def test_defaults_follow_the_contract() -> None:
    settings = load_settings(REQUIRED)
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.picwish_api_url == "https://techhk.aoscdn.com"
    assert settings.picwish_qps == 2
    assert settings.data_dir == Path("./data")
    assert settings.log_level == "INFO"
    assert (settings.user_max_pending, settings.user_per_minute) == (5, 10)
    assert settings.redis_url is None and settings.webhook_url is None
    assert TOKEN not in repr(settings) and "key-0123456789" not in repr(settings)


def test_ids_and_urls_are_parsed() -> None:
    settings = load_settings(
        {
            **REQUIRED,
            "ADMIN_USER_IDS": "1, 2;3",
            "TELEGRAM_API_URL": "http://127.0.0.1:8081/",
            "PICWISH_QPS": "0.5",
        }
    )
    assert settings.admin_user_ids == {1, 2, 3}
    assert settings.telegram_api_url == "http://127.0.0.1:8081"
    assert settings.picwish_qps == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEGRAM_BOT_TOKEN", ""),
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("PICWISH_API_KEY", "has space"),
        ("CUTOUT_BACKEND", "gpu"),
        ("FALLBACK", "cloud"),
        ("LOCAL_CONCURRENCY", "0"),
        ("TELEGRAM_API_URL", "ftp://example.com"),
        ("PICWISH_API_URL", "techhk.aoscdn.com"),
        ("PICWISH_QPS", "fast"),
        ("PICWISH_QPS", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("USER_MAX_PENDING", "1.5"),
        ("USER_PER_MINUTE", "-1"),
        ("REDIS_URL", "http://cache:6379"),
        ("ADMIN_USER_IDS", "alice"),
        ("ALLOWED_USER_IDS", "1,x"),
        ("ALLOWED_CHAT_IDS", "-100abc"),
        ("PICWISH_RETRY_SECONDS", "soon"),
        ("WEBHOOK_URL", "not a url"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**REQUIRED, name: value})
    message = str(caught.value)
    assert name in message and "\n" not in message
    if name == "TELEGRAM_BOT_TOKEN" and value:
        assert value not in message


def test_without_an_api_key_the_offline_engine_cuts_out_unless_picwish_is_asked_for() -> None:
    no_key = {"TELEGRAM_BOT_TOKEN": TOKEN}
    assert load_settings(no_key).cutout_backend == "local"
    assert load_settings(REQUIRED).cutout_backend == "picwish"
    assert load_settings({**REQUIRED, "FALLBACK": "local"}).fallback == "local"
    assert load_settings({**no_key, "FALLBACK": "local"}).fallback is None, "no fallback for the fallback"
    with pytest.raises(ConfigError) as caught:
        load_settings({**no_key, "CUTOUT_BACKEND": "picwish"})
    assert "PICWISH_API_KEY" in str(caught.value) and "\n" not in str(caught.value)


def test_webhook_mode_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_settings({**REQUIRED, "WEBHOOK_URL": "https://bot.example.com/hook"})
    settings = load_settings(
        {**REQUIRED, "WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_SECRET": "s" * 20}
    )
    assert settings.webhook_port == 8080 and "s" * 20 in settings.secrets


def test_env_example_documents_every_setting_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {}
    setting = re.compile(r"^(?:# )?([A-Z_]+)=")  # commented out: read from the environment only (ENV_FILE)
    for before, line in zip(["", *lines], lines, strict=False):
        if match := setting.match(line):
            documented[match.group(1)] = before
    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z_]+)"', (ROOT / "bot/config.py").read_text()))
    read |= set(
        re.findall(r'_(?:required|url|number|ids)\(env, "([A-Z_]+)"', (ROOT / "bot/config.py").read_text())
    )
    assert read, "found the variables config.py reads"
    assert read <= documented.keys(), f"not in .env.example: {sorted(read - documented.keys())}"
    for name, comment in documented.items():
        assert comment.startswith("# ") and not setting.match(comment), f"{name} has no one-line comment above it"
    assert "# ENV_FILE=" in lines, "ENV_FILE is commented out: it says which file to read, so no file sets it"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*REQUIRED, "PICWISH_QPS", "ENV_FILE"):
        monkeypatch.setenv(name, "")  # recorded, so whatever .env sets is undone after the test
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nPICWISH_API_KEY=abc12345\nPICWISH_QPS=3\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.picwish_qps == 3 and settings.picwish_api_key == "abc12345"


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A working directory and a project folder, neither with a .env yet, and no ENV_FILE."""
    for name in (*REQUIRED, "PICWISH_QPS", "ENV_FILE"):
        monkeypatch.setenv(name, "")  # recorded, so whatever a .env sets is undone after the test
        monkeypatch.delenv(name)
    cwd, project = tmp_path / "cwd", tmp_path / "project"
    cwd.mkdir()
    project.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(config, "PROJECT_DIR", project)
    return cwd, project


def write_env(path: Path, qps: int) -> Path:
    """A filled-in .env at ``path``; PICWISH_QPS tells which file was read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nPICWISH_API_KEY=abc12345\nPICWISH_QPS={qps}\n")
    return path


def test_the_project_folder_is_the_one_holding_pyproject() -> None:
    assert config.PROJECT_DIR == ROOT and (ROOT / "pyproject.toml").is_file()


def test_the_project_folders_env_is_read_from_any_working_directory(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, project = places
    write_env(project / ".env", qps=4)
    assert load_settings().picwish_qps == 4
    monkeypatch.setenv("PICWISH_QPS", "5")
    assert load_settings().picwish_qps == 5, "the real environment wins over the file"


def test_the_working_directorys_env_wins_over_the_project_folders(places: tuple[Path, Path]) -> None:
    cwd, project = places
    write_env(project / ".env", qps=4)
    write_env(cwd / ".env", qps=6)
    assert load_settings().picwish_qps == 6


def test_env_file_wins_over_both(
    places: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, project = places
    write_env(project / ".env", qps=4)
    write_env(cwd / ".env", qps=6)
    monkeypatch.setenv("ENV_FILE", str(write_env(tmp_path / "etc" / "bot.env", qps=7)))
    assert load_settings().picwish_qps == 7


@pytest.mark.parametrize("opt_out", ["", "none", " None "])
def test_an_empty_env_file_reads_no_file(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, opt_out: str
) -> None:
    cwd, project = places
    write_env(project / ".env", qps=4)
    write_env(cwd / ".env", qps=6)
    monkeypatch.setenv("ENV_FILE", opt_out)
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        load_settings()
    assert "PICWISH_QPS" not in os.environ
    assert config.dotenv_path(os.environ) is None


def test_a_missing_env_file_is_one_line_naming_env_file(
    places: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, _ = places
    write_env(cwd / ".env", qps=6)
    missing = tmp_path / "nowhere" / "bot.env"
    monkeypatch.setenv("ENV_FILE", str(missing))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("ENV_FILE") and str(missing) in message and "\n" not in message
    assert "PICWISH_QPS" not in os.environ, "no other file is read instead"
