"""Password logins cannot be used to find out which names exist, to run more password checks
than the limit allows, to lock a user out from their own address, or to fill the disk.

Work is counted, never timed: a spy on argon2's PasswordHasher.verify records every password
check that runs (and the hash it runs against), and then runs it for real.
"""

from __future__ import annotations

import threading
import uuid

import pytest
import requests
from argon2 import PasswordHasher

from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.index.accounts import Accounts
from registry_core.index.ratelimit import LoginLimiter
from registry_core.meta.store import MetaStore
from tests.support.server import FromAddress

PASSWORD = "hardening-password-1"
ADMIN = Context(actor="admin")


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """The hashes of the password checks that ran, in order."""
    ran: list[str] = []
    lock = threading.Lock()
    real_verify = PasswordHasher.verify

    def counting_verify(self, hash, password):
        with lock:
            ran.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    return ran


@pytest.fixture
def meta(tmp_path) -> MetaStore:
    return MetaStore(str(tmp_path / "meta.git"), create=True)


def limiter(tmp_path, **options) -> LoginLimiter:
    return LoginLimiter(str(tmp_path / "login-failures"), **options)


def argon2_parameters(password_hash: str) -> str:
    """`$argon2id$v=19$m=19456,t=2,p=1`: what decides how long a check takes."""
    return "$".join(password_hash.split("$")[:4])


def outcome(accounts: Accounts, name: str, password: str, address: str | None = None) -> str:
    try:
        actor = accounts.authenticate(name, password, address)
    except RegistryError as e:
        return e.code
    return "wrong" if actor is None else "ok"


# --- 1. the time of an answer does not tell which names exist ------------------------------------

@pytest.mark.parametrize("who", ["unknown", "disabled", "robot", "existing"])
def test_a_login_as_any_name_runs_one_password_check_with_the_parameters_of_real_hashes(who, meta, tmp_path,
                                                                                          checks):
    accounts = Accounts(meta, limiter(tmp_path))
    real = accounts.create_user(ADMIN, "dora", PASSWORD)
    accounts.create_user(ADMIN, "dis", PASSWORD)
    accounts.update_user(ADMIN, "dis", "Disable dis", disabled=True)
    accounts.create_robot(ADMIN, "dora", "dora-ci")
    name = {"unknown": "nobody", "disabled": "dis", "robot": "dora-ci", "existing": "dora"}[who]
    del checks[:]  # hashing the new passwords above checked nothing
    assert outcome(accounts, name, PASSWORD if who == "disabled" else "a wrong password") == "wrong"
    assert len(checks) == 1
    assert argon2_parameters(checks[0]) == argon2_parameters(real["passwordHash"])


# --- 2. the limit holds however many attempts arrive at once -----------------------------------

@pytest.mark.parametrize("name", ["dora", "nobody"])
def test_concurrent_wrong_passwords_run_no_more_password_checks_than_the_limit(name, meta, tmp_path, checks):
    accounts = Accounts(meta, limiter(tmp_path, attempts=5))
    accounts.create_user(ADMIN, "dora", PASSWORD)
    del checks[:]
    start = threading.Barrier(40)
    outcomes: list[str] = []

    def attempt(number: int) -> None:
        start.wait()
        outcomes.append(outcome(accounts, name, f"guess-{number}", "192.0.2.7"))

    threads = [threading.Thread(target=attempt, args=(number,)) for number in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checks) == 5
    assert sorted(outcomes) == ["TOOMANYREQUESTS"] * 35 + ["wrong"] * 5


def test_concurrent_wrong_passwords_to_the_server_get_no_more_answers_than_the_limit(secured_registry):
    """Every 401 is a password check that ran (in whichever worker process): 10, the default limit."""
    name, _ = new_user(secured_registry)
    start = threading.Barrier(40)
    statuses: list[int] = []

    def attempt(number: int) -> None:
        start.wait()
        statuses.append(requests.get(secured_registry.url + "/v2/", auth=(name, f"guess-{number}")).status_code)

    threads = [threading.Thread(target=attempt, args=(number,)) for number in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [401] * 10 + [429] * 30


def test_a_success_clears_the_attempts_of_its_address(meta, tmp_path, checks):
    accounts = Accounts(meta, limiter(tmp_path, attempts=3))
    accounts.create_user(ADMIN, "dora", PASSWORD)
    assert [outcome(accounts, "dora", f"typo-{n}", "192.0.2.7") for n in range(2)] == ["wrong", "wrong"]
    assert outcome(accounts, "dora", PASSWORD, "192.0.2.7") == "ok"
    assert [outcome(accounts, "dora", f"typo-{n}", "192.0.2.7") for n in range(4)] == ["wrong"] * 3 + [
        "TOOMANYREQUESTS"]


# --- 3. a lockout stops guessing from the failing address, and only there ------------------------

def session_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def new_user(secured_registry) -> tuple[str, Accounts]:
    accounts = Accounts(MetaStore(str(secured_registry.store / "meta.git"), create=False))
    name = f"hard-{uuid.uuid4().hex[:6]}"
    accounts.create_user(ADMIN, name, PASSWORD)
    return name, accounts


def test_a_locked_out_name_still_logs_in_from_an_address_that_did_not_fail(secured_registry):
    name, _ = new_user(secured_registry)
    url, token_url = secured_registry.url + "/v2/", secured_registry.url + "/token"
    guesser, owner = session_from("127.0.0.2"), session_from("127.0.0.1")
    statuses = [guesser.get(url, auth=(name, f"guess-{n}")).status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]
    # from the guessing address even the right password is refused while the lockout lasts:
    # otherwise the answer would tell the guesser which guess was right
    assert guesser.get(url, auth=(name, PASSWORD)).status_code == 429
    assert guesser.get(token_url, auth=(name, PASSWORD)).status_code == 429
    assert owner.get(url, auth=(name, PASSWORD)).status_code == 200
    assert owner.get(token_url, auth=(name, PASSWORD)).status_code == 200


def test_a_client_retrying_a_revoked_token_does_not_lock_its_owner_out(secured_registry):
    name, accounts = new_user(secured_registry)
    secret, document = accounts.create_token(Context(actor=name), name, description="ci")
    accounts.revoke_token(Context(actor=name), name, document["id"])
    url, token_url = secured_registry.url + "/v2/", secured_registry.url + "/token"
    retries = [requests.get(url, auth=(name, secret)).status_code for _ in range(8)]
    retries += [requests.get(token_url, auth=(name, secret)).status_code for _ in range(8)]
    assert retries == [401] * 16
    assert requests.get(url, auth=(name, PASSWORD)).status_code == 200
    assert requests.get(token_url, auth=(name, PASSWORD)).status_code == 200


# --- 4. the attempts on record stay bounded ----------------------------------------------------------

def test_many_unknown_names_keep_a_bounded_number_of_files(meta, tmp_path):
    accounts = Accounts(meta, limiter(tmp_path, keys_kept=20))
    for number in range(50):
        assert outcome(accounts, f"nobody-{number}", "a guess", "192.0.2.7") == "wrong"
    assert len(list((tmp_path / "login-failures").iterdir())) == 20


def test_pruning_drops_expired_attempts_and_keeps_a_lockout_in_force(tmp_path):
    now = [1_000_000.0]
    limits = limiter(tmp_path, attempts=2, window=300, keys_kept=3, clock=lambda: now[0])
    for number in range(2):
        limits.reserve(f"nobody-{number}", "192.0.2.7")
    now[0] += 400  # their window has passed
    for _ in range(2):
        limits.reserve("dora", "192.0.2.7")
    for number in range(2, 4):
        limits.reserve(f"nobody-{number}", "192.0.2.7")
    assert len(list((tmp_path / "login-failures").iterdir())) == 3
    with pytest.raises(RegistryError) as refused:
        limits.reserve("dora", "192.0.2.7")
    assert refused.value.code == "TOOMANYREQUESTS"
