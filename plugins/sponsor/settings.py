"""The sponsor plugin's settings: `pluginConfig.sponsor` in registry.yaml, its schema, and reading
limits and sizes.

```yaml
pluginConfig:
  sponsor:
    signup: open                  # open: POST /api/v1/users without credentials makes an account
    signupLimit: "10/1h"          # sign-ups per client address
    pullLimit: "100/6h"           # manifest GETs per client address, for the anonymous
    userPullLimit: "200/6h"       # manifest GETs per user, for the logged-in (default: twice pullLimit)
    quota: 10GiB                  # storage per namespace; absent: no quota
    quotas: {library: 1TiB}       # per-namespace quotas, instead of `quota` for those
```

A limit is `N/PERIOD`: N requests per window of PERIOD (`30s`, `15m`, `6h`, `1d`; `h` alone is
`1h`). A size is a whole number of bytes with an optional unit (`B`, `KB`, `MB`, `GB`, `TB`
powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` powers of 1024). Both are read whole, through the
formats below (`plugin_config_formats`), so a typo stops `registry serve` with one line naming
its key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_PULL_LIMIT = "100/6h"
DEFAULT_SIGNUP_LIMIT = "10/1h"
_LIMIT = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,5})?([smhd])")
_SIZE = re.compile(r"([0-9]{1,16}) ?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@dataclass(frozen=True)
class Limit:
    count: int
    period: int  # seconds
    text: str

    def header(self, value: int) -> str:
        """A RateLimit header's value in Docker Hub's form: `100;w=21600`."""
        return f"{value};w={self.period}"


def parse_limit(text: str) -> Limit:
    match = _LIMIT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a limit: write N/PERIOD, such as 100/6h (N requests per 6 hours; "
                         "units s, m, h, d)")
    count, number, unit = match.groups()
    return Limit(int(count), int(number or 1) * SECONDS[unit], text)


def parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a size: write a whole number of bytes with an optional unit, "
                         "such as 10GiB or 500MB (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    return int(match.group(1)) * UNITS[match.group(2)]


FORMATS = {"rate-limit": parse_limit, "size": parse_size}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "signup": {"enum": ["open", "closed"]},
        "signupLimit": {"type": "string", "format": "rate-limit"},
        "pullLimit": {"type": "string", "format": "rate-limit"},
        "userPullLimit": {"type": "string", "format": "rate-limit"},
        "quota": {"type": "string", "format": "size"},
        "quotas": {"type": "object", "propertyNames": {"pattern": r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z",
                                                       "maxLength": 64},
                   "additionalProperties": {"type": "string", "format": "size"}},
    },
}


@dataclass(frozen=True)
class Settings:
    signup_open: bool = True
    signup_limit: Limit = field(default_factory=lambda: parse_limit(DEFAULT_SIGNUP_LIMIT))
    pull_limit: Limit = field(default_factory=lambda: parse_limit(DEFAULT_PULL_LIMIT))
    user_pull_limit: Limit | None = None  # None: twice pull_limit
    quota: int | None = None
    quota_text: str | None = None
    quotas: dict = field(default_factory=dict)  # namespace -> (bytes, text)

    @classmethod
    def from_config(cls, section: dict | None) -> Settings:
        """The settings of a section already checked against SCHEMA (absent: the defaults)."""
        section = section or {}
        pulls = parse_limit(section.get("pullLimit", DEFAULT_PULL_LIMIT))
        users = section.get("userPullLimit")
        user_limit = parse_limit(users) if users else Limit(pulls.count * 2, pulls.period, f"{pulls.count * 2}/"
                                                            f"{pulls.text.split('/', 1)[1]}")
        quota = section.get("quota")
        return cls(signup_open=section.get("signup", "open") == "open",
                   signup_limit=parse_limit(section.get("signupLimit", DEFAULT_SIGNUP_LIMIT)),
                   pull_limit=pulls, user_pull_limit=user_limit,
                   quota=parse_size(quota) if quota else None, quota_text=quota,
                   quotas={name: (parse_size(text), text) for name, text in (section.get("quotas") or {}).items()})

    def quota_of(self, namespace: str) -> tuple[int, str] | None:
        """(bytes, the setting's text and key) of `namespace`'s quota, or None when it has none."""
        if namespace in self.quotas:
            size, text = self.quotas[namespace]
            return size, f"{text} (pluginConfig.sponsor.quotas.{namespace})"
        if self.quota is None:
            return None
        return self.quota, f"{self.quota_text} (pluginConfig.sponsor.quota)"
