"""TLS spoken to the plain-HTTP port: one clear log line per client address, not a warning per
connection.

Clients told that a registry is insecure (skopeo and podman with --tls-verify=false, containerd)
still try HTTPS first, on every connection, and fall back to plain HTTP. Their TLS ClientHello
starts with the byte 0x16, which gunicorn refuses as an HTTP method and logs as a warning
("Invalid request from ip=…: Invalid HTTP method: … '\\x16' …"): a dozen lines for one
`skopeo copy`, none of them saying what happened. `TlsProbeFilter`, a filter on the
`gunicorn.error` logger of every worker, turns the first of them from an address into one line
that does, and drops the others.

The addresses already reported are remembered in `ReportedAddresses`, a small table in memory
that the gunicorn master maps before it forks, so that the workers share it: a client whose
connections go to several workers is still reported once. Its slots are found by a hash of the
address; when every slot a new address may take is used, the oldest one is taken over (that
address, should it come back, is reported again).
"""

from __future__ import annotations

import logging
import mmap
import re
import struct
import threading
import time
import zlib

# gunicorn's warning for a request whose method is not a token, from either of its parsers:
#   Invalid request from ip=127.0.0.1: Invalid HTTP method: "Invalid character '\\x16' in HTTP method"
#   Invalid request from ip=127.0.0.1: Invalid HTTP method: '\x16\x03\x01\x02'
# (the method as Python's repr writes it: the byte 0x16 appears as the four characters \x16).
INVALID_METHOD = re.compile(r"Invalid request from ip=(?P<address>\S*): Invalid HTTP method: .*?\\x16.*", re.S)

ADDRESS_BYTES = 46  # the longest IPv6 address in text (INET6_ADDRSTRLEN), padded with zeros
SLOT = struct.Struct(f"<d{ADDRESS_BYTES}s")  # when it was reported (time.time()), the address
SLOTS = 2048  # 110 KiB
PROBES = 8  # slots an address may take, from its hash on


def message(address: str) -> str:
    return (f"{address} spoke TLS to this plain-HTTP port (a client trying https:// before http://, as "
            f"skopeo and podman do with --tls-verify=false); later TLS attempts from {address} are not logged")


class ReportedAddresses:
    """The addresses whose TLS attempts were logged, in a table that processes forked after it is
    made share. Within a process a lock keeps two threads from reporting one address twice;
    between processes two workers may, rarely, both report an address at the same instant."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self._memory = mmap.mmap(-1, slots * SLOT.size)  # anonymous and shared: kept across fork
        self._lock = threading.Lock()

    def first_report(self, address: str) -> bool:
        """True the first time `address` is asked about (it is remembered from then on)."""
        key = address.encode("ascii", "replace")[:ADDRESS_BYTES].ljust(ADDRESS_BYTES, b"\0")
        start = zlib.crc32(key) % self.slots
        with self._lock:
            oldest, oldest_time = None, None
            for step in range(min(PROBES, self.slots)):
                slot = (start + step) % self.slots
                reported, stored = SLOT.unpack_from(self._memory, slot * SLOT.size)
                if stored == key:
                    return False
                if oldest_time is None or reported < oldest_time:
                    oldest, oldest_time = slot, reported
            SLOT.pack_into(self._memory, oldest * SLOT.size, time.time(), key)
            return True


class TlsProbeFilter(logging.Filter):
    """On gunicorn's error log: the first TLS attempt from an address becomes `message(address)`,
    later ones from it are dropped; every other record passes unchanged."""

    def __init__(self, reported: ReportedAddresses):
        super().__init__("tls-probes")
        self.reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is not ours to judge
            return True
        found = INVALID_METHOD.fullmatch(text)
        if found is None:
            return True
        address = found.group("address") or "a client"
        if not self.reported.first_report(address):
            return False
        record.msg, record.args = message(address), ()
        return True


def install(reported: ReportedAddresses, logger_name: str = "gunicorn.error") -> None:
    """Filter `logger_name`'s records through a TlsProbeFilter of `reported` (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, TlsProbeFilter) for f in logger.filters):
        logger.addFilter(TlsProbeFilter(reported))
