package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func init() { scenarios["concurrency"] = scConcurrency; scenarios["stm"] = scSTM }

// lockKey names a lock or election key by its session's lease token.
func (r *Run) lockKey(pfx, key string) string {
	pfx += "/" // NewMutex and NewElection add it
	hex := strings.TrimPrefix(key, pfx)
	id, err := strconv.ParseInt(hex, 16, 64)
	if err != nil {
		return key
	}
	return pfx + r.n.id("lease", id)
}

func scConcurrency(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	s1, err := concurrency.NewSession(c, concurrency.WithTTL(10))
	if err != nil {
		r.step("session", nil, err)
		return
	}
	s2, _ := concurrency.NewSession(c, concurrency.WithTTL(10))
	t, err := c.TimeToLive(bg, s1.Lease())
	r.step("session lease", r.ttl(t), err)

	// Mutex: the second session waits until the first unlocks.
	m1, m2 := concurrency.NewMutex(s1, "mtx/"), concurrency.NewMutex(s2, "mtx/")
	err = m1.Lock(bg)
	r.step("lock 1", r.lockKey("mtx/", m1.Key()), err)
	ctx, stop := context.WithTimeout(bg, 1*time.Second)
	err = m2.Lock(ctx)
	stop()
	r.step("lock 2 while 1 holds it", nil, err)
	order := make(chan string, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m2.Lock(bg); err != nil {
			order <- "lock 2 failed: " + err.Error()
			return
		}
		order <- "lock 2 acquired"
	}()
	time.Sleep(300 * time.Millisecond)
	order <- "unlocking 1"
	err = m1.Unlock(bg)
	r.step("unlock 1", nil, err)
	wg.Wait()
	close(order)
	var seq []string
	for s := range order {
		seq = append(seq, s)
	}
	r.step("order", seq, nil)
	resp, err := c.Get(bg, "mtx/", clientv3.WithPrefix())
	var holders []string
	if err == nil {
		for _, kv := range resp.Kvs {
			holders = append(holders, r.lockKey("mtx/", string(kv.Key)))
		}
	}
	r.step("lock keys", holders, err)
	tx, err := c.Txn(bg).If(m2.IsOwner()).Then(clientv3.OpPut("mtx-guarded", "by 2")).Commit()
	r.step("txn guarded by ownership", r.txn(tx), err)
	m2.Unlock(bg)
	// A locker (sync.Locker) over the same prefix.
	l := concurrency.NewLocker(s1, "mtx/")
	l.Lock()
	l.Unlock()
	r.step("locker", "locked and unlocked", nil)

	// Election: campaign, proclaim, leader, observe, resign.
	e1, e2 := concurrency.NewElection(s1, "elc/"), concurrency.NewElection(s2, "elc/")
	_, err = e1.Leader(bg)
	r.step("leader before any campaign", nil, err)
	err = e1.Proclaim(bg, "nope")
	r.step("proclaim without campaign", nil, err)
	obsCtx, obsStop := context.WithCancel(bg)
	err = e1.Campaign(bg, "one")
	r.step("campaign 1", r.lockKey("elc/", e1.Key()), err)
	obs := concurrency.NewElection(s2, "elc/").Observe(obsCtx)
	seen := []string{r.observe(obs, "one")}
	err = e1.Proclaim(bg, "one, again")
	r.step("proclaim", nil, err)
	seen = append(seen, r.observe(obs, "one, again"))
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(bg, "two") }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(bg, "elc/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	lr, err := e2.Leader(bg)
	if err == nil {
		kv := r.kv(lr.Kvs[0])
		kv["key"] = r.lockKey("elc/", string(lr.Kvs[0].Key))
		r.step("leader while 2 waits", kv, nil)
	} else {
		r.step("leader while 2 waits", nil, err)
	}
	err = e1.Resign(bg)
	r.step("resign 1", nil, err)
	select {
	case err = <-won:
		r.step("campaign 2 wins", r.lockKey("elc/", e2.Key()), err)
	case <-time.After(10 * time.Second):
		r.step("campaign 2 wins", "timed out", nil)
	}
	seen = append(seen, r.observe(obs, "two"))
	r.step("observed", seen, nil)
	obsStop()
	e2.Resign(bg)

	// Closing a session revokes its lease: its lock key goes.
	m3 := concurrency.NewMutex(s1, "mtx/")
	m3.Lock(bg)
	err = s1.Close()
	r.step("close session 1", nil, err)
	resp, err = c.Get(bg, "mtx/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		r.step("lock keys after close", resp.Count, nil)
	} else {
		r.step("lock keys after close", nil, err)
	}
	select {
	case <-s1.Done():
		r.step("session 1 done", true, nil)
	case <-time.After(5 * time.Second):
		r.step("session 1 done", false, nil)
	}
	s2.Close()
}

// scSTM: NewSTM at each isolation level; a counter incremented from several goroutines
// ends exact (ReadCommitted does not check reads, so it only moves a value once).
func scSTM(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	levels := []struct {
		name string
		iso  concurrency.Isolation
	}{
		{"serializable snapshot", concurrency.SerializableSnapshot},
		{"serializable", concurrency.Serializable},
		{"repeatable reads", concurrency.RepeatableReads},
	}
	const workers, each = 4, 5
	for _, lv := range levels {
		key := "stm/" + strings.ReplaceAll(lv.name, " ", "-")
		c.Put(bg, key, "0")
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := concurrency.NewSTM(c, func(s concurrency.STM) error {
						n, _ := strconv.Atoi(s.Get(key))
						s.Put(key, strconv.Itoa(n+1))
						return nil
					}, concurrency.WithIsolation(lv.iso), concurrency.WithAbortContext(bg))
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		var failed []string
		for err := range errs {
			failed = append(failed, err.Error())
		}
		resp, err := c.Get(bg, key)
		if err != nil {
			r.step(lv.name, nil, err)
			continue
		}
		r.step(lv.name, map[string]interface{}{"final": string(resp.Kvs[0].Value), "errors": failed,
			"version": resp.Kvs[0].Version}, nil)
	}
	c.Put(bg, "stm/from", "10")
	c.Put(bg, "stm/to", "0")
	tr, err := concurrency.NewSTM(c, func(s concurrency.STM) error {
		from, _ := strconv.Atoi(s.Get("stm/from"))
		to, _ := strconv.Atoi(s.Get("stm/to"))
		s.Put("stm/from", strconv.Itoa(from-3))
		s.Put("stm/to", strconv.Itoa(to+3))
		s.Del("stm/none")
		return nil
	}, concurrency.WithIsolation(concurrency.ReadCommitted), concurrency.WithPrefetch("stm/from"))
	// The STM's writes come from a Go map: their order in the txn varies run to run.
	if err == nil {
		r.step("read committed transfer", map[string]interface{}{"succeeded": tr.Succeeded, "ops": len(tr.Responses), "rev": r.n.rev(tr.Header.Revision)}, nil)
	} else {
		r.step("read committed transfer", nil, err)
	}
	resp, err := c.Get(bg, "stm/", clientv3.WithPrefix())
	r.step("values", r.get(resp), err)
	_, err = concurrency.NewSTM(c, func(s concurrency.STM) error {
		return fmt.Errorf("apply refused")
	})
	r.step("apply error", nil, err)
}

// observe reads the Observe channel until it shows want (or 10 s pass).
func (r *Run) observe(obs <-chan clientv3.GetResponse, want string) string {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp, ok := <-obs:
			if !ok {
				return "observe channel closed"
			}
			if len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == want {
				return want
			}
		case <-timeout:
			return "timed out waiting for " + want
		}
	}
}
