package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func init() {
	scenarios["maintenance"] = scMaintenance
	scenarios["move-leader"] = scMoveLeader
	scenarios["failover"] = scFailover
}

func (r *Run) members(resp *clientv3.MemberListResponse) []interface{} {
	var out []interface{}
	for _, m := range resp.Members {
		out = append(out, map[string]interface{}{"id": r.n.id("member", int64(m.ID)), "name": m.Name,
			"peer_urls": r.urls(m.PeerURLs), "client_urls": r.urls(m.ClientURLs), "learner": m.IsLearner})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].(map[string]interface{})["name"].(string) < out[j].(map[string]interface{})["name"].(string)
	})
	return out
}

func (r *Run) urls(us []string) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, "url on 127.0.0.1: "+itoa(len(u) > 0 && strings.Contains(u, "127.0.0.1:")))
	}
	return out
}

func itoa(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (r *Run) status(ep string) (map[string]interface{}, *clientv3.StatusResponse, error) {
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	st, err := r.c.Status(ctx, ep)
	if err != nil {
		return nil, nil, err
	}
	return map[string]interface{}{
		"version": st.Version, "db_size_positive": st.DbSize > 0,
		"db_in_use_positive": st.DbSizeInUse > 0, "in_use_le_size": st.DbSizeInUse <= st.DbSize,
		"has_leader": st.Leader != 0, "raft_index_positive": st.RaftIndex > 0,
		"applied_positive": st.RaftAppliedIndex > 0, "term_positive": st.RaftTerm > 0,
		"errors": st.Errors, "learner": st.IsLearner, "rev": r.n.rev(st.Header.Revision)}, st, nil
}

func scMaintenance(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	ep := c.Endpoints()[0]
	ml, err := c.MemberList(bg)
	if err == nil {
		r.step("member list", r.members(ml), nil)
	} else {
		r.step("member list", nil, err)
	}
	st, raw, err := r.status(ep)
	r.step("status", st, err)
	if raw != nil {
		r.step("status: leader is this member", raw.Leader == raw.Header.MemberId, nil)
	}
	al, err := c.AlarmList(bg)
	if err == nil {
		r.step("alarm list", len(al.Alarms), nil)
	} else {
		r.step("alarm list", nil, err)
	}
	_, err = c.AlarmDisarm(bg, &clientv3.AlarmMember{})
	r.step("disarm nothing", nil, err)
	c.Put(bg, "mt/a", "1")
	c.Put(bg, "mt/a", "2")
	_, err = c.Defragment(bg, ep)
	r.step("defragment", nil, err)
	h1, err := c.HashKV(bg, ep, 0)
	if err != nil {
		r.step("hash kv", nil, err)
		return
	}
	h2, _ := c.HashKV(bg, ep, 0)
	c.Put(bg, "mt/a", "3")
	h3, _ := c.HashKV(bg, ep, 0)
	h4, err := c.HashKV(bg, ep, h1.Header.Revision)
	r.step("hash kv", map[string]interface{}{
		"stable": h1.Hash == h2.Hash, "changes with a write": h3.Hash != h1.Hash,
		"at the earlier revision equals the earlier hash": err == nil && h4.Hash == h1.Hash,
		"compact revision": r.n.rev(h1.CompactRevision), "rev": r.n.rev(h1.Header.Revision)}, nil)
	_, err = c.HashKV(bg, ep, h3.Header.Revision+100)
	r.step("hash kv at a future revision", nil, err)
	// A snapshot streamed to a file; the test checks it with etcdutl snapshot status.
	rc, err := c.Snapshot(bg)
	if err != nil {
		r.step("snapshot", nil, err)
		return
	}
	path := filepath.Join(r.opts.work, "snapshot.db")
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	n, err := io.Copy(f, rc)
	f.Close()
	rc.Close()
	r.step("snapshot", map[string]interface{}{"path": "snapshot.db", "bytes_positive": n > 0}, err)
	_, err = c.MoveLeader(bg, 12345)
	r.step("move leader to a non-member", nil, err)
}

// scMoveLeader (3 members): the leader hands over to a follower named by its id.
func scMoveLeader(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leaderEp, followerEp, target := r.findLeader()
	if leaderEp == "" {
		r.step("find the leader", "no leader", nil)
		return
	}
	onFollower, err := clientv3.New(clientv3.Config{Endpoints: []string{followerEp}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer onFollower.Close()
	_, err = onFollower.MoveLeader(bg, target)
	r.step("move leader sent to a follower", nil, err)
	onLeader, err := clientv3.New(clientv3.Config{Endpoints: []string{leaderEp}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer onLeader.Close()
	_, err = onLeader.MoveLeader(bg, target)
	r.step("move leader", nil, err)
	st, err := onFollower.Status(bg, followerEp)
	if err == nil {
		r.step("the target leads", st.Leader == target && st.Header.MemberId == target, nil)
	} else {
		r.step("the target leads", nil, err)
	}
	_, err = r.c.Put(bg, "ml/a", "after the move")
	r.step("put after the move", nil, err)
	// Sync: the client learns the members' client URLs (what AutoSyncInterval runs).
	one, err := clientv3.New(clientv3.Config{Endpoints: r.c.Endpoints()[:1], DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer one.Close()
	err = one.Sync(bg)
	eps := one.Endpoints()
	sort.Strings(eps)
	want := append([]string{}, r.c.Endpoints()...)
	for i, ep := range want {
		want[i] = "http://" + ep
	}
	sort.Strings(want)
	r.step("sync finds every member's client URL", strings.Join(eps, ",") == strings.Join(want, ","), err)
}

// findLeader -> the leader's endpoint, a follower's endpoint, that follower's id.
func (r *Run) findLeader() (string, string, uint64) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var leader, follower string
		var fid uint64
		for _, ep := range r.c.Endpoints() {
			ctx, stop := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := r.c.Status(ctx, ep)
			stop()
			if err != nil || st.Leader == 0 {
				continue
			}
			if st.Leader == st.Header.MemberId {
				leader = ep
			} else {
				follower, fid = ep, st.Header.MemberId
			}
		}
		if leader != "" && follower != "" {
			return leader, follower, fid
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", "", 0
}

// scFailover (3 members, the client dialing all three): the leader is killed -9, the
// client's writes keep succeeding within bounds and its watch carries on; then a
// second member is stopped and WithRequireLeader calls on the last fail with no leader.
func scFailover(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	if leader, _, _ := r.findLeader(); leader == "" {
		r.step("find the leader", "no leader", nil)
		return
	}
	wch := c.Watch(bg, "fo/", clientv3.WithPrefix())
	rlCtx, rlStop := context.WithCancel(clientv3.WithRequireLeader(bg))
	defer rlStop()
	c.Put(bg, "fo/0", "before")
	r.step("watch before the kill", r.collect(wch, 1, 5*time.Second), nil)
	r.wait("kill -9 the leader")
	// Each write retried until it succeeds (2 s per attempt, 20 s in all). A write whose
	// answer was lost may have been applied: each is a create-only txn, so a retry
	// never writes twice, and one that finds the key written counts as done.
	ok := 0
	for i := 1; i <= 5; i++ {
		key := "fo/" + strconv.Itoa(i)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ctx, stop := context.WithTimeout(bg, 2*time.Second)
			tr, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", 0)).
				Then(clientv3.OpPut(key, "after")).Else(clientv3.OpGet(key)).Commit()
			stop()
			if err == nil {
				if tr.Succeeded || len(tr.Responses[0].GetResponseRange().Kvs) == 1 {
					ok++
				}
				if !tr.Succeeded { // timing, not compared: said on stderr
					fmt.Fprintf(os.Stderr, "%s: an attempt that timed out was applied\n", key)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.step("writes after the kill that succeeded", ok, nil)
	// The revisions differ with the attempts that failed: only keys and values
	// compared (distinct ones: the create-only txns above write each key once, this
	// keeps the comparison safe anyway). The same revision twice would be a
	// redelivery by the watch.
	keys, redelivered := []string{}, 0
	seenKV, seenRev := map[string]bool{}, map[int64]bool{}
	deadline := time.After(20 * time.Second)
collect:
	for len(keys) < 5 {
		select {
		case resp, ok := <-wch:
			if !ok {
				break collect
			}
			for _, ev := range resp.Events {
				if seenRev[ev.Kv.ModRevision] {
					redelivered++
				}
				seenRev[ev.Kv.ModRevision] = true
				k := string(ev.Kv.Key) + "=" + string(ev.Kv.Value)
				if !seenKV[k] {
					seenKV[k] = true
					keys = append(keys, k)
				}
			}
		case <-deadline:
			break collect
		}
	}
	r.step("watch after the kill", keys, nil)
	r.step("events delivered twice", redelivered, nil)
	resp, err := c.Get(bg, "fo/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		r.step("keys", resp.Count, nil)
	} else {
		r.step("keys", nil, err)
	}
	// A watch that requires a leader, then only one member left.
	rl := c.Watch(rlCtx, "fo/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-rl
	last := r.wait("stop the leader of the two left")
	// Read the watch from now on: clientv3 drops the closing error response of a
	// watch channel nobody reads within 250 ms (closeSendErrTimeout).
	rlEnd := make(chan map[string]interface{}, 1)
	go func() { rlEnd <- r.closes(rl, 20*time.Second) }()
	single, err := clientv3.New(clientv3.Config{Endpoints: []string{last}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer single.Close()
	// The member answers "etcdserver: no leader" (UNAVAILABLE), which clientv3 retries
	// for a read 100 times, 25 ms apart, then returns (within the 15 s given).
	time.Sleep(1500 * time.Millisecond) // past an election timeout: the leader is gone
	ctx, stop := context.WithTimeout(clientv3.WithRequireLeader(bg), 15*time.Second)
	_, rlErr := single.Get(ctx, "fo/0", clientv3.WithSerializable())
	stop()
	r.step("get with require leader on the last member", nil, rlErr)
	resp, err = single.Get(bg, "fo/0", clientv3.WithSerializable())
	r.step("serializable get without require leader", keysOf(resp), err)
	r.step("require-leader watch ends", <-rlEnd, nil)
	wctx, wstop := context.WithCancel(clientv3.WithRequireLeader(bg))
	defer wstop()
	r.step("require-leader watch opened without a leader", r.closes(single.Watch(wctx, "fo/"), 10*time.Second), nil)
}
