package main

import (
	"context"
	"sort"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func init() { scenarios["lease"] = scLease }

func (r *Run) ttl(resp *clientv3.LeaseTimeToLiveResponse) map[string]interface{} {
	if resp == nil {
		return nil
	}
	keys := []string{}
	for _, k := range resp.Keys {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	// The remaining TTL depends on timing: only whether it is within the grant.
	left := "expired"
	if resp.TTL > 0 && resp.TTL <= resp.GrantedTTL {
		left = "within the grant"
	} else if resp.TTL > resp.GrantedTTL {
		left = "over the grant"
	}
	return map[string]interface{}{"id": r.n.id("lease", int64(resp.ID)), "granted": resp.GrantedTTL, "ttl": left, "keys": keys}
}

func scLease(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	g, err := c.Grant(bg, 30)
	if err != nil {
		r.step("grant", nil, err)
		return
	}
	r.step("grant", map[string]interface{}{"id": r.n.id("lease", int64(g.ID)), "ttl": g.TTL, "error": g.Error}, nil)
	c.Put(bg, "ls/a", "1", clientv3.WithLease(g.ID))
	c.Put(bg, "ls/b", "2", clientv3.WithLease(g.ID))
	t, err := c.TimeToLive(bg, g.ID, clientv3.WithAttachedKeys())
	r.step("time to live with keys", r.ttl(t), err)
	t, err = c.TimeToLive(bg, g.ID)
	r.step("time to live", r.ttl(t), err)
	once, err := c.KeepAliveOnce(bg, g.ID)
	if err == nil {
		r.step("keep alive once", map[string]interface{}{"id": r.n.id("lease", int64(once.ID)), "ttl": once.TTL}, nil)
	} else {
		r.step("keep alive once", nil, err)
	}
	// Leases: only whether this scenario's leases are listed (others' may be too).
	g2, _ := c.Grant(bg, 3)
	ls, err := c.Leases(bg)
	if err == nil {
		have := map[clientv3.LeaseID]bool{}
		for _, l := range ls.Leases {
			have[l.ID] = true
		}
		r.step("leases", map[string]bool{"first": have[g.ID], "second": have[g2.ID]}, nil)
	} else {
		r.step("leases", nil, err)
	}

	// KeepAlive: the channel delivers renewals (every TTL/3) until its context ends.
	g3, _ := c.Grant(bg, 2)
	ctx, stop := context.WithCancel(bg)
	ka, err := c.KeepAlive(ctx, g3.ID)
	if err != nil {
		r.step("keep alive", nil, err)
		stop()
		return
	}
	var renewals []interface{}
	timeout := time.After(10 * time.Second)
	for len(renewals) < 3 {
		select {
		case resp := <-ka:
			renewals = append(renewals, []interface{}{r.n.id("lease", int64(resp.ID)), resp.TTL})
		case <-timeout:
			renewals = append(renewals, "timed out")
		}
		if len(renewals) > 0 && renewals[len(renewals)-1] == "timed out" {
			break
		}
	}
	r.step("keep alive renewals", renewals, nil)
	c.Put(bg, "ls/exp", "x", clientv3.WithLease(g3.ID))
	stop()
	closed := false
	select {
	case _, ok := <-ka:
		for ok {
			_, ok = <-ka
		}
		closed = true
	case <-time.After(5 * time.Second):
	}
	r.step("keep alive channel closes with its context", closed, nil)
	// The lease whose keep-alive stopped expires, and its key with it.
	gone := false
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(bg, "ls/exp")
		if err == nil && len(resp.Kvs) == 0 {
			gone = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.step("key of the lapsed lease is deleted", gone, nil)
	t, err = c.TimeToLive(bg, g3.ID)
	r.step("time to live of the lapsed lease", r.ttl(t), err)
	_, err = c.KeepAliveOnce(bg, g3.ID)
	r.step("keep alive once on the lapsed lease", nil, err)

	// A KeepAlive channel closes when the lease is revoked elsewhere.
	ka2, err := c.KeepAlive(bg, g2.ID)
	if err == nil {
		<-ka2
	}
	_, err = c.Revoke(bg, g.ID)
	r.step("revoke", nil, err)
	_, err = c.Revoke(bg, g2.ID)
	r.step("revoke the kept-alive one", nil, err)
	closed = false
	timeout = time.After(10 * time.Second)
wait:
	for {
		select {
		case _, ok := <-ka2:
			if !ok {
				closed = true
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	r.step("keep alive channel closes after revoke", closed, nil)
	resp, err := c.Get(bg, "ls/", clientv3.WithPrefix())
	r.step("keys after revoke", r.get(resp), err)
	t, err = c.TimeToLive(bg, g.ID, clientv3.WithAttachedKeys())
	r.step("time to live after revoke", r.ttl(t), err)
	_, err = c.Revoke(bg, g.ID)
	r.step("revoke again", nil, err)
	_, err = c.KeepAliveOnce(bg, g.ID)
	r.step("keep alive once after revoke", nil, err)
	_, err = c.Grant(bg, 9000000001)
	r.step("grant over the maximum TTL", nil, err)
	g4, err := c.Grant(bg, 1)
	if err == nil {
		t, err = c.TimeToLive(bg, g4.ID)
		r.step("grant 1s: granted TTL (the minimum applies)", map[string]interface{}{"grant": g4.TTL, "ttl": r.ttl(t)}, err)
		c.Revoke(bg, g4.ID)
	} else {
		r.step("grant 1s: granted TTL (the minimum applies)", nil, err)
	}
}
