package main

import (
	"context"
	"regexp"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// The size of an over-long message depends on the header's ids: left out.
var msgSize = regexp.MustCompile(`\(\d+ vs\. (\d+)\)`)

func init() { scenarios["watch"] = scWatch; scenarios["watch-restart"] = scWatchRestart }

// collect reads events from ch until n arrived, the channel closed or the deadline;
// it reports the events and how the channel ended.
func (r *Run) collect(ch clientv3.WatchChan, n int, within time.Duration) map[string]interface{} {
	evs := []interface{}{}
	out := map[string]interface{}{}
	deadline := time.After(within)
	for len(evs) < n {
		select {
		case resp, ok := <-ch:
			if !ok {
				out["closed"] = true
				out["events"] = evs
				return out
			}
			if err := resp.Err(); err != nil {
				out["error"] = r.text(err.Error())
				out["compact_revision"] = r.n.rev(resp.CompactRevision)
				out["canceled"] = resp.Canceled
			}
			for _, ev := range resp.Events {
				evs = append(evs, r.ev(ev))
			}
		case <-deadline:
			out["timed_out"] = true
			out["events"] = evs
			return out
		}
	}
	out["events"] = evs
	return out
}

// closes reports whether ch ends (is closed) within the time, and any response before.
func (r *Run) closes(ch clientv3.WatchChan, within time.Duration) map[string]interface{} {
	out := map[string]interface{}{"closed": false}
	deadline := time.After(within)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				out["closed"] = true
				return out
			}
			if err := resp.Err(); err != nil {
				out["error"] = r.text(err.Error())
			}
			if resp.Canceled {
				out["canceled"] = true
			}
		case <-deadline:
			return out
		}
	}
}

func scWatch(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	base := r.base(bg)
	c.Put(bg, "w/a", "1")
	c.Put(bg, "w/b", "1")
	c.Put(bg, "w/a", "2")
	c.Delete(bg, "w/b")
	c.Put(bg, "wx", "outside the prefix")

	ctx, stop := context.WithCancel(bg)
	r.step("history with prefix and prev kv", r.collect(c.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(base+1), clientv3.WithPrevKV()), 4, 5*time.Second), nil)
	r.step("history without prev kv", r.collect(c.Watch(ctx, "w/a", clientv3.WithRev(base+1)), 2, 5*time.Second), nil)
	r.step("filter put", r.collect(c.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(base+1), clientv3.WithFilterPut()), 1, 5*time.Second), nil)
	r.step("filter delete", r.collect(c.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(base+1), clientv3.WithFilterDelete()), 3, 5*time.Second), nil)
	r.step("range b..wx", r.collect(c.Watch(ctx, "w/b", clientv3.WithRange("wx"), clientv3.WithRev(base+1)), 2, 5*time.Second), nil)
	r.step("from key", r.collect(c.Watch(ctx, "w/b", clientv3.WithFromKey(), clientv3.WithRev(base+1)), 3, 5*time.Second), nil)
	stop()

	// Live events, the created notification, then a cancel by context.
	ctx, stop = context.WithCancel(bg)
	live := c.Watch(ctx, "w/live", clientv3.WithCreatedNotify(), clientv3.WithPrevKV())
	first := <-live
	r.step("created notify", map[string]interface{}{"created": first.Created, "rev": r.n.rev(first.Header.Revision), "events": len(first.Events)}, nil)
	c.Put(bg, "w/live", "x")
	c.Put(bg, "w/live", "y")
	r.step("live events", r.collect(live, 2, 5*time.Second), nil)
	stop()
	r.step("cancel by context", r.closes(live, 5*time.Second), nil)

	// RequestProgress: a progress notification at the current revision on the stream of ctx.
	ctx, stop = context.WithCancel(bg)
	quiet := c.Watch(ctx, "w/quiet", clientv3.WithCreatedNotify())
	<-quiet
	err := c.RequestProgress(ctx)
	if err != nil {
		r.step("request progress", nil, err)
	} else {
		select {
		case resp := <-quiet:
			r.step("request progress", map[string]interface{}{"progress": resp.IsProgressNotify(), "rev": r.n.rev(resp.Header.Revision), "events": len(resp.Events)}, nil)
		case <-time.After(5 * time.Second):
			r.step("request progress", "no response in 5s", nil)
		}
	}
	stop()

	// WithProgressNotify: the servers run with --experimental-watch-progress-notify-interval=1s.
	ctx, stop = context.WithCancel(bg)
	pn := c.Watch(ctx, "w/quiet", clientv3.WithProgressNotify())
	select {
	case resp := <-pn:
		r.step("progress notify", map[string]interface{}{"progress": resp.IsProgressNotify(), "rev": r.n.rev(resp.Header.Revision)}, nil)
	case <-time.After(10 * time.Second):
		r.step("progress notify", "no notification in 10s", nil)
	}
	stop()

	// WithFragment: three 700 KB values whose history is one 2.1 MB response; the
	// client takes at most 2 MB in one message, so only fragments get through.
	big := strings.Repeat("f", 700*1024)
	fragRev := base + 8
	for _, k := range []string{"wf/1", "wf/2", "wf/3"} {
		if _, err := c.Put(bg, k, big); err != nil {
			r.step("put "+k, nil, err)
		}
	}
	cfg := r.cfg
	cfg.MaxCallRecvMsgSize = 2 * 1024 * 1024
	small, err := clientv3.New(cfg)
	if err != nil {
		r.step("client with a 2 MB limit", nil, err)
		return
	}
	ctx, stop = context.WithCancel(bg)
	fch := small.Watch(ctx, "wf/", clientv3.WithPrefix(), clientv3.WithRev(fragRev), clientv3.WithFragment())
	got := []interface{}{}
	deadline := time.After(10 * time.Second)
loop:
	for len(got) < 3 {
		select {
		case resp, ok := <-fch:
			if !ok {
				break loop
			}
			if resp.Err() != nil {
				got = append(got, r.text(resp.Err().Error()))
			}
			for _, ev := range resp.Events {
				got = append(got, []interface{}{string(ev.Kv.Key), len(ev.Kv.Value), r.n.rev(ev.Kv.ModRevision)})
			}
		case <-deadline:
			got = append(got, "timed out")
			break loop
		}
	}
	r.step("fragmented history", got, nil)
	stop()
	small.Close()
	// The same without WithFragment: one message over the client's limit ends the stream.
	small, err = clientv3.New(cfg)
	if err != nil {
		r.step("client with a 2 MB limit", nil, err)
		return
	}
	ctx, stop = context.WithCancel(bg)
	res := r.collect(small.Watch(ctx, "wf/", clientv3.WithPrefix(), clientv3.WithRev(fragRev)), 3, 10*time.Second)
	if e, ok := res["error"].(string); ok {
		res["error"] = msgSize.ReplaceAllString(e, "(<size> vs. $1)")
	}
	r.step("unfragmented history", res, nil)
	stop()
	small.Close()

	// A watch from a compacted revision: the compaction error, then the channel closes.
	if _, err := c.Compact(bg, base+3); err != nil {
		r.step("compact", nil, err)
	}
	ctx, stop = context.WithCancel(bg)
	r.step("start below the compaction", r.collect(c.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(base+1)), 1, 5*time.Second), nil)
	stop()
}

// scWatchRestart: a watch that lives through a kill -9 and restart of its member
// resumes where it was (no event lost, none repeated).
func scWatchRestart(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	ch := c.Watch(bg, "wr/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	c.Put(bg, "wr/1", "a")
	r.step("before the kill", r.collect(ch, 1, 5*time.Second), nil)
	r.wait("kill -9 and restart the member")
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, stop := context.WithTimeout(bg, 2*time.Second)
		_, err = c.Put(ctx, "wr/2", "b")
		stop()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.step("put after the restart", nil, err)
	c.Put(bg, "wr/1", "c")
	r.step("after the restart", r.collect(ch, 2, 20*time.Second), nil)
	resp, err := c.Get(bg, "wr/", clientv3.WithPrefix())
	r.step("get", r.get(resp), err)
}
