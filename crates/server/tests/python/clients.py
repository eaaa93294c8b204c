"""Python's etcd clients against a server: etcd3 (gRPC) and etcd3gw (the HTTP gateway).

Usage: clients.py HOST PORT. Exits non-zero with the failed assertion; prints "ok" when everything holds.
The same script runs against cairn and against the real etcd (crates/server/tests/python.rs).
"""

import sys

import etcd3
import etcd3gw
import grpc

host, port = sys.argv[1], int(sys.argv[2])

# etcd3: the gRPC client.
c = etcd3.client(host=host, port=port)
c.put("py/a", "1")
c.put("py/b", "2")
value, meta = c.get("py/a")
assert value == b"1", value
assert meta.version == 1 and meta.create_revision == meta.mod_revision, vars(meta)
assert [v for v, _ in c.get_prefix("py/")] == [b"1", b"2"]
ok, responses = c.transaction(
    compare=[c.transactions.value("py/a") == "1"],
    success=[c.transactions.put("py/a", "one")],
    failure=[],
)
assert ok and c.get("py/a")[0] == b"one"
assert c.delete("py/b")
assert c.get("py/b")[0] is None
try:
    c.put("", "empty")
    raise AssertionError("an empty key was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    assert e.details() == "etcdserver: key is not provided", e.details()
# Watch: a historical watch from a revision, then a live event; cancel ends the iterator.
start = c.put("py/w", "first").header.revision
events, cancel = c.watch("py/w", start_revision=start)
c.put("py/w", "second")
got = []
for ev in events:
    got.append((ev.value, ev.mod_revision))
    if len(got) == 2:
        cancel()
assert got == [(b"first", start), (b"second", start + 1)], got
prefix_events, cancel = c.watch_prefix("py/wp/")
c.put("py/wp/x", "1")
c.delete("py/wp/x")
kinds = []
for ev in prefix_events:
    kinds.append(type(ev).__name__)
    if len(kinds) == 2:
        cancel()
assert kinds == ["PutEvent", "DeleteEvent"], kinds

# Leases: keys attached to a lease go with it; refresh and time-to-live work.
lease = c.lease(60, lease_id=0x5151)
assert lease.id == 0x5151 and lease.granted_ttl == 60
c.put("py/leased", "v", lease=lease)
assert 0 < lease.remaining_ttl <= 60
assert [k for k in lease.keys] == [b"py/leased"], lease.keys
assert lease.refresh()[0].TTL == 60
info = c.get_lease_info(0x5151)
assert info.ID == 0x5151 and info.grantedTTL == 60, info
lease.revoke()
assert c.get("py/leased")[0] is None

status = c.status()
assert status.leader is not None and status.raft_term >= 2
assert len(list(c.members)) == 1

# etcd3gw: the JSON gateway.
g = etcd3gw.client(host=host, port=port)
assert g.put("gw/k", "v")
assert g.get("gw/k") == [b"v"]
items = g.get_prefix("gw/")
assert [v for v, _ in items] == [b"v"] and items[0][1]["key"] == b"gw/k", items
assert g.delete("gw/k")
assert g.get("gw/k") == []
gl = g.lease(ttl=30)
assert g.put("gw/leased", "v", lease=gl)
assert gl.ttl() > 0 and gl.keys() == [b"gw/leased"], gl.keys()
assert gl.refresh() == 30
assert gl.revoke()
assert g.get("gw/leased") == []
gw_events, gw_cancel = g.watch("gw/w")
g.put("gw/w", "seen")
for ev in gw_events:
    assert ev["kv"]["value"] == b"seen", ev
    gw_cancel()
    break
assert int(g.status()["raftTerm"]) >= 2
assert len(g.members()) == 1
print("ok")
