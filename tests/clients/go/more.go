package main

import (
	"context"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/clientv3/ordering"
)

func init() { scenarios["watch-lease-edges"] = scWatchLeaseEdges }

// scWatchLeaseEdges: several watches on one stream, one cancelled while the others
// go on; the DELETE (with prev kv) of a key whose lease expired; a watch from a
// future revision; KeepAlive of a lease that does not exist; a session whose lease is
// revoked underneath it; the ordering KV.
func scWatchLeaseEdges(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	base := r.base(bg)
	shared, stopShared := context.WithCancel(bg)
	defer stopShared()
	wa := c.Watch(shared, "we/a", clientv3.WithPrevKV())
	wb := c.Watch(shared, "we/b")
	own, stopOwn := context.WithCancel(bg)
	wc := c.Watch(own, "we/", clientv3.WithPrefix())
	future := c.Watch(shared, "we/", clientv3.WithPrefix(), clientv3.WithRev(base+4))
	c.Put(bg, "we/a", "1")
	c.Put(bg, "we/b", "1")
	r.step("watch c before its cancel", r.collect(wc, 2, 5*time.Second), nil)
	stopOwn()
	r.step("watch c cancelled", r.closes(wc, 5*time.Second), nil)
	c.Put(bg, "we/a", "2")
	c.Put(bg, "we/b", "2")
	r.step("watch a goes on", r.collect(wa, 2, 5*time.Second), nil)
	r.step("watch b goes on", r.collect(wb, 2, 5*time.Second), nil)
	r.step("watch from a future revision", r.collect(future, 1, 5*time.Second), nil)

	// The lease of we/l expires (nothing keeps it alive): a DELETE with its prev kv.
	g, err := c.Grant(bg, 2)
	if err != nil {
		r.step("grant", nil, err)
		return
	}
	wl := c.Watch(shared, "we/l", clientv3.WithPrevKV())
	c.Put(bg, "we/l", "leased", clientv3.WithLease(g.ID))
	r.step("expiry deletes the key", r.collect(wl, 2, 15*time.Second), nil)

	// KeepAlive of an id no lease has: the channel closes.
	ka, err := c.KeepAlive(shared, clientv3.LeaseID(0x7fff0001))
	if err != nil {
		r.step("keep alive of an unknown lease", nil, err)
	} else {
		closed, got := false, 0
		timeout := time.After(10 * time.Second)
	loop:
		for {
			select {
			case _, ok := <-ka:
				if !ok {
					closed = true
					break loop
				}
				got++
			case <-timeout:
				break loop
			}
		}
		r.step("keep alive of an unknown lease", map[string]interface{}{"closed": closed, "responses": got}, nil)
	}

	// A session whose lease is revoked by someone else ends (Done closes).
	s, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		r.step("session", nil, err)
		return
	}
	m := concurrency.NewMutex(s, "we-mtx/")
	m.Lock(bg)
	_, err = c.Revoke(bg, s.Lease())
	r.step("revoke the session's lease", nil, err)
	select {
	case <-s.Done():
		r.step("session done", true, nil)
	case <-time.After(10 * time.Second):
		r.step("session done", false, nil)
	}
	resp, err := c.Get(bg, "we-mtx/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		r.step("its lock key is gone", resp.Count == 0, nil)
	} else {
		r.step("its lock key is gone", nil, err)
	}

	// The ordering KV: reads never go back in revision.
	violations := 0
	okv := ordering.NewKV(c.KV, func(op clientv3.Op, resp clientv3.OpResponse, prevRev int64) error {
		violations++
		return nil
	})
	for i := 0; i < 3; i++ {
		c.Put(bg, "we/o", "x")
		resp, err = okv.Get(bg, "we/o")
		if err != nil {
			r.step("ordering get", nil, err)
			return
		}
	}
	tr, err := okv.Txn(bg).Then(clientv3.OpGet("we/o")).Commit()
	r.step("ordering kv", map[string]interface{}{"violations": violations, "version": resp.Kvs[0].Version,
		"txn": r.txn(tr)}, err)
}
