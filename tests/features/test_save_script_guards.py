"""Planted bugs in ``features/save_state.lua``: each guard of the script, cut or bent in a copy, makes the store
contract (``test_store_contract.py``, run here on the real Redis) fail; the real script passes it.

This is mutation testing for the one piece of code no Python mutation tool reaches: if a mutation below ever
survives, a guard of the script has no test left that depends on it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import pytest
import redis

import features.redis_store
from features.redis_store import SAVE_SCRIPT, RedisFeatureStore
from features.views import VITALS_VIEW

from . import test_store_contract as contract

pytestmark = pytest.mark.integration

# The contract cases that a save script can break (the others read, or check the client).
CONTRACT: tuple[Callable, ...] = (
    contract.test_save_load_roundtrip,
    contract.test_offset_cas_refuses_a_stale_writer,
    contract.test_offset_cas_refuses_a_writer_ahead_of_the_store,
    contract.test_offsets_only_move_forward,
    contract.test_ttl_is_set_on_touched_keys,
    contract.test_replay_changes_nothing,
    contract.test_expired_buckets_are_deleted,
    contract.test_latest_vector_is_saved_atomically_and_read_in_one_call,
    contract.test_save_many_applies_each_partition_and_raises_the_stale_one,
)

# (name, text in the script, replacement): each a one-line bug a refactoring could introduce.
MUTATIONS = [
    ("cas removed", "if cur ~= tonumber(ARGV[1]) then return {0, stored} end\n", ""),
    ("cas reads the new offset", "if cur ~= tonumber(ARGV[1])", "if cur ~= tonumber(ARGV[2])"),
    ("cas only refuses a larger stored offset", "if cur ~= tonumber(ARGV[1])", "if cur > tonumber(ARGV[1])"),
    ("backwards move allowed", "if tonumber(ARGV[2]) < cur then return {-1, stored} end\n", ""),
    ("standing still refused", "if tonumber(ARGV[2]) < cur", "if tonumber(ARGV[2]) <= cur"),
    ("refusal still writes", "if cur ~= tonumber(ARGV[1]) then return {0, stored} end\n",
     "if cur ~= tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[3]) return {0, stored} end\n"),
    ("offset not stored", "redis.call('SET', KEYS[1], ARGV[3])\nreturn {1, stored}", "return {1, stored}"),
    ("no TTL", "    redis.call('PEXPIRE', key, ttl)\n", ""),
    ("latest vector without TTL", "redis.call('SET', key, ARGV[a], 'PX', ttl)", "redis.call('SET', key, ARGV[a])"),
    ("expired buckets kept", "    if ndel > 0 then each_chunk('HDEL', key, a, ndel) end\n", ""),
    ("a single expired bucket kept", "if ndel > 0 then", "if ndel > 1 then"),
    ("only the first bucket written", "each_chunk('HSET', key, a, 2 * nset)", "each_chunk('HSET', key, a, 2)"),
    ("one bucket row written without its value", "redis.call('HSET', key, ARGV[a], ARGV[a + 1])",
     "redis.call('HSET', key, ARGV[a], ARGV[a])"),
    ("latest vector not written", "    redis.call('SET', key, ARGV[a], 'PX', ttl)\n", ""),
    ("stored offset read as 0", "local stored = '-1'", "local stored = '0'"),
    ("a chunk loses its last argument", "unpack(ARGV, first, upto)", "unpack(ARGV, first, upto - 1)"),
]


def contract_failures(client: redis.Redis, script: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The contract cases that fail with ``script`` as the save script (each on a fresh view: own keys)."""
    monkeypatch.setattr(features.redis_store, "SAVE_SCRIPT", script)
    failed = []
    for case in CONTRACT:
        view = dataclasses.replace(VITALS_VIEW, name=f"test-{uuid.uuid4().hex[:10]}")
        try:
            case((RedisFeatureStore(client), view))
        except (AssertionError, pytest.fail.Exception):
            failed.append(case.__name__)
        except Exception as exc:  # noqa: BLE001 - an unexpected error is a failure of the contract too
            failed.append(f"{case.__name__}: {type(exc).__name__}")
        finally:
            contract._delete_view_keys(client, view)
    return failed


def test_the_real_script_passes_the_contract(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    assert contract_failures(client, SAVE_SCRIPT, monkeypatch) == []


@pytest.mark.parametrize(("name", "old", "new"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_planted_bug_in_the_script_fails_the_contract(client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                                        name: str, old: str, new: str) -> None:
    assert SAVE_SCRIPT.count(old) == 1, f"save_state.lua changed: update the planted bug {name!r}"
    assert contract_failures(client, SAVE_SCRIPT.replace(old, new), monkeypatch), f"{name!r} survived"
