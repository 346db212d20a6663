package main

import (
	"context"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func init() { scenarios["kv"] = scKV; scenarios["txn"] = scTxn; scenarios["compact"] = scCompact }

// scKV: Put/Get/Delete and every Get option.
func scKV(r *Run) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.c
	base := r.base(ctx)
	for i, k := range []string{"kv/e", "kv/b", "kv/d", "kv/a", "kv/c"} {
		_, err := c.Put(ctx, k, string(rune('z'-i)))
		if err != nil {
			r.step("seed "+k, nil, err)
		}
	}
	pr, err := c.Put(ctx, "kv/a", "A", clientv3.WithPrevKV())
	if err == nil {
		r.step("put with prev kv", map[string]interface{}{"rev": r.n.rev(pr.Header.Revision), "prev": r.kv(pr.PrevKv)}, nil)
	} else {
		r.step("put with prev kv", nil, err)
	}
	pr, err = c.Put(ctx, "kv/new", "N", clientv3.WithPrevKV())
	if err == nil {
		r.step("put with prev kv, new key", r.kv(pr.PrevKv), nil)
	} else {
		r.step("put with prev kv, new key", nil, err)
	}
	gets := []struct {
		name string
		key  string
		opts []clientv3.OpOption
	}{
		{"get", "kv/a", nil},
		{"get missing", "kv/zz", nil},
		{"prefix", "kv/", []clientv3.OpOption{clientv3.WithPrefix()}},
		{"range b..d", "kv/b", []clientv3.OpOption{clientv3.WithRange("kv/d")}},
		{"limit 2", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(2)}},
		{"sort value desc limit 2", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2)}},
		{"sort key desc", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}},
		{"sort create asc", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)}},
		{"sort mod desc", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)}},
		{"sort version desc", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend)}},
		{"last create", "kv/", clientv3.WithLastCreate()},
		{"first key", "kv/", clientv3.WithFirstKey()},
		{"at first put's revision", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(base + 1)}},
		{"a at revision before put", "kv/a", []clientv3.OpOption{clientv3.WithRev(base + 3)}},
		{"keys only", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}},
		{"count only", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}},
		{"serializable", "kv/a", []clientv3.OpOption{clientv3.WithSerializable()}},
		{"min mod rev", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMinModRev(base + 4)}},
		{"max create rev", "kv/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMaxCreateRev(base + 2)}},
		{"future revision", "kv/a", []clientv3.OpOption{clientv3.WithRev(base + 1000)}},
	}
	for _, g := range gets {
		resp, err := c.Get(ctx, g.key, g.opts...)
		r.step(g.name, r.get(resp), err)
	}
	// WithFromKey: keys of their own, above every other scenario's ("~" sorts last).
	for _, k := range []string{"~fk/a", "~fk/b", "~fk/c"} {
		c.Put(ctx, k, "v")
	}
	resp, err := c.Get(ctx, "~fk/b", clientv3.WithFromKey())
	r.step("from key", r.get(resp), err)
	// Leases kept or not by WithIgnoreLease / WithIgnoreValue.
	lg, err := c.Grant(ctx, 60)
	if err != nil {
		r.step("grant", nil, err)
		return
	}
	_, err = c.Put(ctx, "kv/leased", "L1", clientv3.WithLease(lg.ID))
	r.step("put with lease", nil, err)
	_, err = c.Put(ctx, "kv/leased", "L2", clientv3.WithIgnoreLease())
	r.step("put ignore lease", nil, err)
	_, err = c.Put(ctx, "kv/leased", "", clientv3.WithIgnoreValue(), clientv3.WithLease(lg.ID))
	r.step("put ignore value", nil, err)
	resp, err = c.Get(ctx, "kv/leased")
	r.step("leased key", r.get(resp), err)
	_, err = c.Put(ctx, "kv/none", "", clientv3.WithIgnoreValue())
	r.step("ignore value on a missing key", nil, err)
	_, err = c.Put(ctx, "kv/none", "", clientv3.WithIgnoreLease())
	r.step("ignore lease on a missing key", nil, err)
	_, err = c.Put(ctx, "kv/x", "v", clientv3.WithIgnoreValue())
	r.step("ignore value on a missing key, with a value", nil, err)
	_, err = c.Put(ctx, "kv/x", "v", clientv3.WithLease(clientv3.LeaseID(0x7fff)))
	r.step("put with an unknown lease", nil, err)
	_, err = c.Put(ctx, "", "v")
	r.step("put empty key", nil, err)
	_, err = c.Get(ctx, "")
	r.step("get empty key", nil, err)
	c.Revoke(ctx, lg.ID)
	// Request size: etcd's --max-request-bytes (1.5 MiB) on a put just under and over.
	_, err = c.Put(ctx, "kv/big", strings.Repeat("b", 1400*1024))
	r.step("put of 1.4 MiB", nil, err)
	_, err = c.Put(ctx, "kv/big", strings.Repeat("b", 1600*1024))
	r.step("put of 1.6 MiB", nil, err)
	// Over the server's gRPC limit too (max-request-bytes + 512 KiB), from a client
	// that sends up to 4 MiB (clientv3's own limit is 2 MiB).
	cfg := r.cfg
	cfg.MaxCallSendMsgSize = 4 * 1024 * 1024
	if wide, err := clientv3.New(cfg); err == nil {
		_, err = wide.Put(ctx, "kv/big", strings.Repeat("b", 2100*1024))
		r.step("put of 2.1 MiB", nil, err)
		wide.Close()
	} else {
		r.step("put of 2.1 MiB", nil, err)
	}
	// Delete: one key with prev, a range, a prefix, nothing.
	dr, err := c.Delete(ctx, "kv/b", clientv3.WithPrevKV())
	if err == nil {
		r.step("delete with prev", map[string]interface{}{"deleted": dr.Deleted, "prev": r.kvs(dr.PrevKvs), "rev": r.n.rev(dr.Header.Revision)}, nil)
	} else {
		r.step("delete with prev", nil, err)
	}
	dr, err = c.Delete(ctx, "kv/c", clientv3.WithRange("kv/e"))
	if err == nil {
		r.step("delete range", map[string]interface{}{"deleted": dr.Deleted, "prev": r.kvs(dr.PrevKvs)}, nil)
	} else {
		r.step("delete range", nil, err)
	}
	dr, err = c.Delete(ctx, "kv/zz")
	if err == nil {
		r.step("delete missing", map[string]interface{}{"deleted": dr.Deleted, "rev": r.n.rev(dr.Header.Revision)}, nil)
	} else {
		r.step("delete missing", nil, err)
	}
	dr, err = c.Delete(ctx, "kv/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err == nil {
		r.step("delete prefix with prev", map[string]interface{}{"deleted": dr.Deleted, "prev": r.kvs(dr.PrevKvs)}, nil)
	} else {
		r.step("delete prefix with prev", nil, err)
	}
	resp, err = c.Get(ctx, "kv/", clientv3.WithPrefix())
	r.step("after deletes", r.get(resp), err)
}

func (r *Run) txn(resp *clientv3.TxnResponse) map[string]interface{} {
	if resp == nil {
		return nil
	}
	var ops []interface{}
	for _, op := range resp.Responses {
		switch {
		case op.GetResponseRange() != nil:
			g := op.GetResponseRange()
			ops = append(ops, map[string]interface{}{"range": r.kvs(g.Kvs), "count": g.Count, "more": g.More})
		case op.GetResponsePut() != nil:
			ops = append(ops, map[string]interface{}{"put": r.kv(op.GetResponsePut().PrevKv)})
		case op.GetResponseDeleteRange() != nil:
			d := op.GetResponseDeleteRange()
			ops = append(ops, map[string]interface{}{"deleted": d.Deleted, "prev": r.kvs(d.PrevKvs)})
		case op.GetResponseTxn() != nil:
			t := (*clientv3.TxnResponse)(op.GetResponseTxn())
			ops = append(ops, map[string]interface{}{"txn": r.txn(t)})
		}
	}
	return map[string]interface{}{"succeeded": resp.Succeeded, "rev": r.n.rev(resp.Header.Revision), "ops": ops}
}

// scTxn: If/Then/Else with every compare target and result, nested txns, errors.
func scTxn(r *Run) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.c
	base := r.base(ctx)
	c.Put(ctx, "txn/a", "5")
	c.Put(ctx, "txn/b", "7")
	c.Put(ctx, "txn/b", "8")
	lg, _ := c.Grant(ctx, 60)
	c.Put(ctx, "txn/l", "x", clientv3.WithLease(lg.ID))
	cmps := []struct {
		name string
		cmp  clientv3.Cmp
	}{
		{"value =", clientv3.Compare(clientv3.Value("txn/a"), "=", "5")},
		{"value !=", clientv3.Compare(clientv3.Value("txn/a"), "!=", "5")},
		{"value >", clientv3.Compare(clientv3.Value("txn/a"), ">", "4")},
		{"value <", clientv3.Compare(clientv3.Value("txn/a"), "<", "4")},
		{"value of missing key =", clientv3.Compare(clientv3.Value("txn/none"), "=", "")},
		{"version =", clientv3.Compare(clientv3.Version("txn/b"), "=", 2)},
		{"version of missing = 0", clientv3.Compare(clientv3.Version("txn/none"), "=", 0)},
		{"version >", clientv3.Compare(clientv3.Version("txn/b"), ">", 2)},
		{"create rev =", clientv3.Compare(clientv3.CreateRevision("txn/b"), "=", base+2)},
		{"create rev <", clientv3.Compare(clientv3.CreateRevision("txn/b"), "<", base+2)},
		{"mod rev =", clientv3.Compare(clientv3.ModRevision("txn/b"), "=", base+3)},
		{"mod rev !=", clientv3.Compare(clientv3.ModRevision("txn/b"), "!=", base+3)},
		{"lease =", clientv3.Compare(clientv3.LeaseValue("txn/l"), "=", lg.ID)},
		{"lease = 0", clientv3.Compare(clientv3.LeaseValue("txn/a"), "=", 0)},
		{"lease !=", clientv3.Compare(clientv3.LeaseValue("txn/l"), "!=", lg.ID)},
		{"prefix value >", clientv3.Compare(clientv3.Value("txn/"), ">", "0").WithPrefix()},
		{"prefix value > 6", clientv3.Compare(clientv3.Value("txn/"), ">", "6").WithPrefix()},
		{"range mod rev <", clientv3.Compare(clientv3.ModRevision("txn/a"), "<", base+100).WithRange("txn/c")},
		{"range version = 2", clientv3.Compare(clientv3.Version("txn/a"), "=", 2).WithRange("txn/c")},
	}
	for _, t := range cmps {
		resp, err := c.Txn(ctx).If(t.cmp).Then(clientv3.OpGet("txn/a")).Else(clientv3.OpGet("txn/b")).Commit()
		r.step(t.name, r.txn(resp), err)
	}
	resp, err := c.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("txn/a"), "=", "5"),
		clientv3.Compare(clientv3.Version("txn/b"), "=", 2),
	).Then(
		clientv3.OpPut("txn/a", "6", clientv3.WithPrevKV()),
		clientv3.OpDelete("txn/b", clientv3.WithPrevKV()),
		clientv3.OpGet("txn/", clientv3.WithPrefix()),
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("txn/a"), "=", "6")},
			[]clientv3.Op{clientv3.OpPut("txn/c", "nested")}, nil),
	).Else(clientv3.OpPut("txn/else", "1")).Commit()
	r.step("several compares, then with nested txn", r.txn(resp), err)
	resp, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("txn/a"), "=", "5")).
		Then(clientv3.OpPut("txn/then", "1")).
		Else(clientv3.OpPut("txn/else", "1"), clientv3.OpGet("txn/", clientv3.WithPrefix(), clientv3.WithCountOnly())).Commit()
	r.step("else branch", r.txn(resp), err)
	resp, err = c.Txn(ctx).Commit()
	r.step("empty txn", r.txn(resp), err)
	resp, err = c.Txn(ctx).Then(clientv3.OpPut("txn/d", "1"), clientv3.OpPut("txn/d", "2")).Commit()
	r.step("duplicate put", r.txn(resp), err)
	resp, err = c.Txn(ctx).Then(clientv3.OpPut("txn/d", "1"), clientv3.OpDelete("txn/", clientv3.WithPrefix())).Commit()
	r.step("put inside a deleted range", r.txn(resp), err)
	resp, err = c.Txn(ctx).Then(clientv3.OpPut("txn/d", "1", clientv3.WithLease(clientv3.LeaseID(0x7fff)))).Commit()
	r.step("put with unknown lease", r.txn(resp), err)
	resp, err = c.Txn(ctx).Then(clientv3.OpGet("txn/a", clientv3.WithRev(base+1000))).Commit()
	r.step("get at a future revision", r.txn(resp), err)
	var many []clientv3.Op
	for i := 0; i < 129; i++ {
		many = append(many, clientv3.OpGet("txn/a"))
	}
	resp, err = c.Txn(ctx).Then(many...).Commit()
	r.step("129 ops", r.txn(resp), err)
	c.Revoke(ctx, lg.ID)
}

// scCompact: Compact, then reads and compactions at and below it.
func scCompact(r *Run) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.c
	base := r.base(ctx)
	for i := 0; i < 4; i++ {
		c.Put(ctx, "cmp/k", string(rune('a'+i)))
	}
	cr, err := c.Compact(ctx, base+3)
	if err == nil {
		r.step("compact", r.n.rev(cr.Header.Revision), nil)
	} else {
		r.step("compact", nil, err)
	}
	resp, err := c.Get(ctx, "cmp/k", clientv3.WithRev(base+2))
	r.step("get below the compaction", r.get(resp), err)
	resp, err = c.Get(ctx, "cmp/k", clientv3.WithRev(base+3))
	r.step("get at the compaction", r.get(resp), err)
	_, err = c.Compact(ctx, base+3)
	r.step("compact again", nil, err)
	_, err = c.Compact(ctx, base+2)
	r.step("compact below", nil, err)
	_, err = c.Compact(ctx, base+100)
	r.step("compact a future revision", nil, err)
	cr, err = c.Compact(ctx, base+4, clientv3.WithCompactPhysical())
	if err == nil {
		r.step("compact physical", r.n.rev(cr.Header.Revision), nil)
	} else {
		r.step("compact physical", nil, err)
	}
	tr, err := c.Txn(ctx).Then(clientv3.OpGet("cmp/k", clientv3.WithRev(base+1))).Commit()
	r.step("txn get below the compaction", r.txn(tr), err)
}
