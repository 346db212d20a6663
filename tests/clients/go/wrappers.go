package main

import (
	"context"
	"sort"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/clientv3/leasing"
	"go.etcd.io/etcd/clientv3/mirror"
	"go.etcd.io/etcd/clientv3/namespace"
)

func init() {
	scenarios["namespace"] = scNamespace
	scenarios["leasing"] = scLeasing
	scenarios["mirror"] = scMirror
}

func scNamespace(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	kv := namespace.NewKV(c.KV, "ns1/")
	w := namespace.NewWatcher(c.Watcher, "ns1/")
	ls := namespace.NewLease(c.Lease, "ns1/")
	ctx, stop := context.WithCancel(bg)
	defer stop()
	wch := w.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithPrevKV())
	_, err := kv.Put(bg, "a", "1")
	r.step("put a", nil, err)
	pr, err := kv.Put(bg, "a", "2", clientv3.WithPrevKV())
	if err == nil {
		r.step("put a again, prev", r.kv(pr.PrevKv), nil)
	} else {
		r.step("put a again, prev", nil, err)
	}
	g, err := ls.Grant(bg, 30)
	if err != nil {
		r.step("grant", nil, err)
		return
	}
	kv.Put(bg, "b", "1", clientv3.WithLease(g.ID))
	resp, err := kv.Get(bg, "", clientv3.WithPrefix())
	r.step("get all in the namespace", r.get(resp), err)
	resp, err = c.Get(bg, "ns1/", clientv3.WithPrefix())
	r.step("raw keys", r.get(resp), err)
	resp, err = kv.Get(bg, "a", clientv3.WithFromKey())
	r.step("from key in the namespace", r.get(resp), err)
	t, err := ls.TimeToLive(bg, g.ID, clientv3.WithAttachedKeys())
	r.step("time to live keys without the prefix", r.ttl(t), err)
	tx, err := kv.Txn(bg).If(clientv3.Compare(clientv3.Value("a"), "=", "2")).
		Then(clientv3.OpGet("", clientv3.WithPrefix(), clientv3.WithKeysOnly()), clientv3.OpDelete("b", clientv3.WithPrevKV())).Commit()
	r.step("txn", r.txn(tx), err)
	r.step("watch in the namespace", r.collect(wch, 4, 5*time.Second), nil)
	dr, err := kv.Delete(bg, "", clientv3.WithPrefix())
	if err == nil {
		r.step("delete all", dr.Deleted, nil)
	} else {
		r.step("delete all", nil, err)
	}
	ls.Revoke(bg, g.ID)
}

func scLeasing(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	other, err := clientv3.New(r.cfg)
	if err != nil {
		r.step("second client", nil, err)
		return
	}
	defer other.Close()
	c.Put(bg, "lk/a", "1")
	lkv, closeLKV, err := leasing.NewKV(c, "lkpfx/", concurrency.WithTTL(5))
	if err != nil {
		r.step("new leasing kv", nil, err)
		return
	}
	defer closeLKV()
	resp, err := lkv.Get(bg, "lk/a")
	r.step("get acquires the key", r.get(resp), err)
	lease, err := c.Get(bg, "lkpfx/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	r.step("leasing keys", keysOf(lease), err)
	resp, err = lkv.Get(bg, "lk/a")
	r.step("cached get", r.get(resp), err)
	// A plain client's write does not touch the leasing key: the cached value stays
	// (the leasing package's design; every writer must go through a leasing KV).
	_, err = other.Put(bg, "lk/a", "2")
	r.step("a plain client writes", nil, err)
	resp, err = lkv.Get(bg, "lk/a")
	r.step("cached get after the plain write", r.get(resp), err)
	// A second leasing KV's write revokes the first's lease on the key.
	olkv, closeOther, err := leasing.NewKV(other, "lkpfx/", concurrency.WithTTL(5))
	if err != nil {
		r.step("second leasing kv", nil, err)
		return
	}
	defer closeOther()
	_, err = olkv.Put(bg, "lk/a", "2b")
	r.step("a second leasing kv writes", nil, err)
	resp, err = lkv.Get(bg, "lk/a")
	r.step("get sees that write", r.get(resp), err)
	_, err = lkv.Put(bg, "lk/a", "3")
	r.step("put through the leasing kv", nil, err)
	resp, err = other.Get(bg, "lk/a")
	r.step("the other client reads it", r.get(resp), err)
	tx, err := lkv.Txn(bg).If(clientv3.Compare(clientv3.Value("lk/a"), "=", "3")).
		Then(clientv3.OpPut("lk/b", "x"), clientv3.OpGet("lk/a")).Commit()
	r.step("txn", r.txn(tx), err)
	dr, err := lkv.Delete(bg, "lk/", clientv3.WithPrefix())
	if err == nil {
		r.step("delete prefix", dr.Deleted, nil)
	} else {
		r.step("delete prefix", nil, err)
	}
	resp, err = other.Get(bg, "lk/", clientv3.WithPrefix())
	r.step("gone for the other client", r.get(resp), err)
}

func keysOf(resp *clientv3.GetResponse) []string {
	out := []string{}
	if resp == nil {
		return out
	}
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	sort.Strings(out)
	return out
}

func scMirror(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	for _, k := range []string{"mr/a", "mr/b", "mr/c"} {
		c.Put(bg, k, "1")
	}
	c.Put(bg, "mrx", "outside")
	s := mirror.NewSyncer(c, "mr/", 0)
	kvc, errc := s.SyncBase(bg)
	var base []interface{}
	for resp := range kvc {
		base = append(base, r.kvs(resp.Kvs)...)
	}
	var syncErr error
	select {
	case syncErr = <-errc:
	default:
	}
	r.step("sync base", base, syncErr)
	ctx, stop := context.WithCancel(bg)
	defer stop()
	updates := s.SyncUpdates(ctx)
	c.Put(bg, "mr/d", "2")
	c.Delete(bg, "mr/a")
	c.Put(bg, "mrx", "outside again")
	r.step("sync updates", r.collect(updates, 2, 5*time.Second), nil)
}
