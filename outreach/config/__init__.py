"""The loader: config.toml and campaigns/*.toml -> core types, and where passwords come from.

This is the one place that reads the project's files and runs password commands; the rest
of outreach gets values (core.settings.Config, core.model.Campaign). Every problem is
reported with its file, line and key.

- toml_reader: one TOML file, every problem collected with its file:line and key
- settings_file: config.toml -> Config
- campaigns: campaigns/*.toml -> Campaign
- passwords: password_env, password_cmd and token_cmd, looked up when a login needs them
"""

from outreach.config.campaigns import campaign_files, load_campaign, load_campaigns
from outreach.config.passwords import command_output, server_password
from outreach.config.settings_file import CONFIG_ENV, find_config, load_config
from outreach.config.toml_reader import key_location, read_toml

__all__ = [
    "CONFIG_ENV",
    "campaign_files",
    "command_output",
    "find_config",
    "key_location",
    "load_campaign",
    "load_campaigns",
    "load_config",
    "read_toml",
    "server_password",
]
