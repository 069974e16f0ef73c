"""The admission rules one by one: reasons, env, reservations, fair share, quotas, expiry,
and the database's own refusal of a double grant."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.config import Settings
from controller.errors import InvalidInput
from controller.scheduling.admission import Admission, Admitter
from controller.scheduling.factory import build_admitter
from controller.scheduling.inventory import GpuPool, Inventory, Quota
from controller.scheduling.leases import LeaseAdmitter
from controller.store.database import Database
from controller.store.lease_schema import LeaseRow, ResourceRow
from controller.store.schema import TaskRow
from tests.leases.helpers import T0, FakeClock, add_task, inventory, migrated

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "inventory.example.yaml"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return migrated(f"sqlite:///{tmp_path / 't.db'}")


def admit(db: Database, admitter: Admitter, *ids: str) -> dict[str, Admission]:
    with db.write() as session:
        rows = [session.get(TaskRow, i) for i in ids]
        decisions = admitter.admit(session, [r for r in rows if r is not None])
        for row in rows:
            assert row is not None
            if decisions[row.id].admitted:
                row.status = "running"
    return decisions


def test_gpu_env_tokens_and_reason(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=2), 30, FakeClock())
    with db.write() as s:
        add_task(s, "a", gpu=1)
        add_task(s, "b", gpu=2, queued_at=T0 + timedelta(seconds=1))
    out = admit(db, admitter, "a", "b")
    a, b = out["a"], out["b"]
    assert a.admitted and a.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert a.env["NVIDIA_VISIBLE_DEVICES"] == "0"
    assert a.env["TRACECTL_FENCING_TOKEN"] == "1"
    leases = json.loads(a.env["TRACECTL_LEASES"])
    assert [x["resource"] for x in leases] == ["gpu:pool0:0"]
    assert not b.admitted
    assert b.reason == "waiting for 2 gpu (flavor any): 1 free"


def test_reservation_keeps_small_tasks_off_what_the_head_needs(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=2), 30, FakeClock())
    with db.write() as s:
        add_task(s, "hold", gpu=1)
    admit(db, admitter, "hold")
    with db.write() as s:
        add_task(s, "big", gpu=2, queued_at=T0 + timedelta(seconds=1))
        add_task(s, "small", gpu=1, queued_at=T0 + timedelta(seconds=2))
        add_task(s, "vol", volumes=[("scratch", "rw")], queued_at=T0 + timedelta(seconds=3))
    out = admit(db, admitter, "big", "small", "vol")
    assert not out["big"].admitted
    assert not out["small"].admitted
    assert "1 reserved for earlier tasks" in out["small"].reason
    assert out["vol"].admitted  # backfill: big needs no volume
    with db.write() as s:
        admitter.release(s, "hold", "succeeded")
    out = admit(db, admitter, "big", "small")
    assert out["big"].admitted and not out["small"].admitted


def test_rwx_many_readers_or_one_writer_and_rwo_exclusive(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=0), 30, FakeClock())
    with db.write() as s:
        add_task(s, "r1", volumes=[("datasets", "ro")])
        add_task(s, "r2", volumes=[("datasets", "ro")])
        add_task(s, "w", volumes=[("datasets", "rw")], queued_at=T0 + timedelta(seconds=1))
        add_task(s, "r3", volumes=[("datasets", "ro")], queued_at=T0 + timedelta(seconds=2))
        add_task(s, "o1", volumes=[("scratch", "ro")])
        add_task(s, "o2", volumes=[("scratch", "ro")], queued_at=T0 + timedelta(seconds=1))
    out = admit(db, admitter, "r1", "r2", "w", "r3", "o1", "o2")
    assert out["r1"].admitted and out["r2"].admitted
    assert out["w"].reason == ("waiting for volume datasets (rw, RWX): 2 reader(s) hold it")
    # the waiting writer reserves the volume: later readers queue behind it
    assert out["r3"].reason == (
        "waiting for volume datasets (ro, RWX): reserved for an earlier task"
    )
    assert out["o1"].admitted
    assert out["o2"].reason.startswith("waiting for volume scratch (ro, RWO): held by")
    env = json.loads(out["r1"].env["TRACECTL_VOLUMES"])
    assert env == [{"claim": "datasets", "mode": "ro", "mount_path": "/data"}]


def test_fair_share_prefers_the_team_holding_fewer_gpus(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=3), 30, FakeClock())
    with db.write() as s:
        add_task(s, "a1", team="a", gpu=2)
    admit(db, admitter, "a1")
    with db.write() as s:
        add_task(s, "a2", team="a", gpu=1, queued_at=T0 + timedelta(seconds=1))
        add_task(s, "b1", team="b", gpu=1, queued_at=T0 + timedelta(seconds=2))
    out = admit(db, admitter, "a2", "b1")
    assert out["b1"].admitted and not out["a2"].admitted


def test_priority_beats_fair_share(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=1), 30, FakeClock())
    with db.write() as s:
        add_task(s, "low", team="b", gpu=1)
        add_task(s, "high", team="a", gpu=1, priority=5, queued_at=T0 + timedelta(seconds=5))
    out = admit(db, admitter, "low", "high")
    assert out["high"].admitted and not out["low"].admitted


def test_team_quota(db: Database) -> None:
    inv = inventory(gpus=0, quotas={"a": Quota(cpu=4, memory="8Gi")})
    admitter = LeaseAdmitter(inv, 30, FakeClock())
    with db.write() as s:
        add_task(s, "x", team="a", cpu=3, memory="1Gi")
        add_task(s, "y", team="a", cpu=2, queued_at=T0 + timedelta(seconds=1))
        add_task(s, "z", team="a", cpu=8, queued_at=T0 + timedelta(seconds=2))
        add_task(s, "other", team="b", cpu=100)
    out = admit(db, admitter, "x", "y", "z", "other")
    assert out["x"].admitted and out["other"].admitted
    assert out["y"].reason == "waiting for team a quota: cpu 3/4 in use, needs 2"
    assert out["z"].reason.startswith("cannot ever start: cpu 8 exceeds")
    with db.write() as s:
        admitter.release(s, "x", "succeeded")
    assert admit(db, admitter, "y")["y"].admitted


def test_empty_inventory_admits_claimless_tasks_and_explains_the_rest(db: Database) -> None:
    admitter = build_admitter(Settings(inventory_file=None))
    with db.write() as s:
        add_task(s, "plain")
        add_task(s, "gpu", gpu=1)
        add_task(s, "vol", volumes=[("scratch", "rw")])
    out = admit(db, admitter, "plain", "gpu", "vol")
    assert out["plain"].admitted and out["plain"].env == {}
    assert out["gpu"].reason == (
        "cannot ever start: no gpu of flavor any in the inventory (set TRACECTL_INVENTORY_FILE)"
    )
    assert out["vol"].reason == "cannot ever start: volume scratch is not in the inventory"


def test_flavor_and_pool_size(db: Database) -> None:
    inv = Inventory(
        gpu_pools=[
            GpuPool(name="a100", flavor="nvidia.com/a100", count=2),
            GpuPool(name="t4", flavor="nvidia.com/t4", count=1),
        ]
    )
    admitter = LeaseAdmitter(inv, 30, FakeClock())
    with db.write() as s:
        add_task(s, "t4", gpu=1, flavor="nvidia.com/t4")
        add_task(s, "toobig", gpu=2, flavor="nvidia.com/t4")
        add_task(s, "h100", gpu=1, flavor="nvidia.com/h100")
    out = admit(db, admitter, "t4", "toobig", "h100")
    assert out["t4"].env["TRACECTL_GPU_POOL"] == "t4"
    assert "the largest pool has 1" in out["toobig"].reason
    assert "no gpu of flavor nvidia.com/h100" in out["h100"].reason


def test_expired_lease_is_reclaimed_only_when_the_holder_is_gone(db: Database) -> None:
    clock = FakeClock()
    admitter = LeaseAdmitter(inventory(gpus=1), 30, clock)
    with db.write() as s:
        add_task(s, "a", gpu=1)
        add_task(s, "b", gpu=1, queued_at=T0 + timedelta(seconds=1))
    admit(db, admitter, "a")
    clock.advance(100)  # a's lease expired: nobody renewed it (controller down, say)
    assert not admit(db, admitter, "b")["b"].admitted  # a runs
    with db.write() as s:
        admitter.heartbeat(s, ["a"])
    with db.write() as s:
        row = s.get(TaskRow, "a")
        assert row is not None
        row.status = "failed"  # the executor saw it exit; release() was never called
    clock.advance(10)
    assert not admit(db, admitter, "b")["b"].admitted  # not expired
    clock.advance(30)
    assert admit(db, admitter, "b")["b"].admitted
    with db.read() as s:
        reclaimed = s.scalar(select(LeaseRow).where(LeaseRow.task_id == "a"))
        assert reclaimed is not None and reclaimed.release_reason == "expired; holder gone"


def test_the_database_refuses_a_second_exclusive_lease(db: Database) -> None:
    admitter = LeaseAdmitter(inventory(gpus=1), 30, FakeClock())
    with db.write() as s:
        add_task(s, "a", gpu=1)
    admit(db, admitter, "a")
    with pytest.raises(IntegrityError), db.write() as s:
        s.add(
            LeaseRow(
                task_id="intruder",
                team="x",
                attempt=1,
                resource="gpu:pool0:0",
                kind="gpu",
                mode="rw",
                is_exclusive=True,
                fencing_token=99,
                granted_at=T0,
                expires_at=T0,
            )
        )
    with pytest.raises(IntegrityError), db.write() as s:
        unit = s.get(ResourceRow, "gpu:pool0:0")
        assert unit is not None
        unit.shared_holders = 1  # a reader beside the exclusive holder


def test_leases_of_and_restart(db: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    admitter = LeaseAdmitter(inventory(gpus=1), 30, clock)
    with db.write() as s:
        add_task(s, "a", gpu=1, volumes=[("datasets", "ro")])
        add_task(s, "b", gpu=1, queued_at=T0 + timedelta(seconds=1))
    admit(db, admitter, "a")
    db.dispose()
    db2 = Database(db.url)  # a restarted controller: new engine, new admitter
    again = LeaseAdmitter(inventory(gpus=1), 30, clock)
    assert not admit(db2, again, "b")["b"].admitted
    with db2.write() as s:
        held = again.leases_of(s, "a")
        again.release(s, "a", "succeeded")
    assert {x["resource"] for x in held} == {"gpu:pool0:0", "volume:datasets"}
    assert admit(db2, again, "b")["b"].env["TRACECTL_FENCING_TOKEN"] == "2"


def test_inventory_file_round_trip(tmp_path: Path) -> None:
    inv = Inventory.load(EXAMPLE)
    assert any(p.count for p in inv.gpu_pools) and inv.volumes and inv.quotas
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu_pools: [{name: x, count: -1}]\n")
    with pytest.raises(InvalidInput):
        Inventory.load(bad)
