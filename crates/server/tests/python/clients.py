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
assert int(g.status()["raftTerm"]) >= 2
assert len(g.members()) == 1
print("ok")
