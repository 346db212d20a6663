"""etcd's server-side concurrency services: v3lockpb.Lock and v3electionpb.Election.

etcd implements them (server/etcdserver/api/v3lock, v3election) with its own Go
client's recipes (client/v3/concurrency: Mutex, Election) running inside the server
against an in-process client. kvcore does the same: ``client.LocalClient`` gives the
recipes Txn / Range / DeleteRange / LeaseGrant through the core's own handlers (so
proposals go through Raft and reads are linearizable, on any member) and waits for
deletions and changes with internal watchers on the core's watch hub.

  client.py    the in-process client: calls, hub watchers, waitDeletes
  lock.py      Lock / Unlock (concurrency.Mutex)
  election.py  Campaign / Proclaim / Leader / Observe / Resign (concurrency.Election)

Errors reach clients as etcd's do: the in-process Go client turns a server error into
a plain Go error, which gRPC reports as UNKNOWN with etcd's message.
"""
