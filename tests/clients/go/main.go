// Command clientv3-scenarios drives the official Go etcd client (go.etcd.io/etcd/clientv3,
// etcd 3.4.23's tree as Debian ships it) through named scenarios against --endpoints and
// prints one JSON line per step: {"scenario", "step", "result"} or {..., "error"}.
//
// The transcript is normalised here so two servers' transcripts compare equal: revisions
// are relative to the scenario's start, ids (lease, member, cluster, watch) become
// <kind#n> in order of first appearance, raft terms are left out, and the servers' ports
// inside error texts become <port>. tests/clients/test_go_clientv3.py runs it against
// kvcore and etcd 3.5.1 and compares.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"go.etcd.io/etcd/pkg/transport"
)

// Norm holds what makes one server's values comparable with another's.
type Norm struct {
	base int64
	ids  map[string]string
	cnt  map[string]int
}

func (n *Norm) rev(r int64) int64 {
	if r <= 0 { // none (0) or never compacted (-1)
		return r
	}
	return r - n.base
}

func (n *Norm) id(kind string, v int64) string {
	if v == 0 {
		return "0"
	}
	key := fmt.Sprintf("%s/%d", kind, v)
	if t, ok := n.ids[key]; ok {
		return t
	}
	n.cnt[kind]++
	t := fmt.Sprintf("<%s#%d>", kind, n.cnt[kind])
	n.ids[key] = t
	return t
}

// Run is one scenario's context: the client(s), the output, the normaliser.
type Run struct {
	name  string
	cfg   clientv3.Config
	c     *clientv3.Client
	n     *Norm
	enc   *json.Encoder
	ports *regexp.Regexp
	in    *bufio.Reader
	opts  *Options
}

var hexID = regexp.MustCompile(`\b[0-9a-f]{16}\b`)

func (r *Run) text(s string) string {
	s = r.ports.ReplaceAllString(s, "127.0.0.1:<port>")
	return hexID.ReplaceAllString(s, "<hex id>")
}

// step prints one step: its result, or the error's text when err is set.
func (r *Run) step(name string, v interface{}, err error) {
	line := map[string]interface{}{"scenario": r.name, "step": name}
	if err != nil {
		line["error"] = r.text(err.Error())
	} else {
		line["result"] = v
	}
	if e := r.enc.Encode(line); e != nil {
		panic(e)
	}
}

// wait prints a step the test acts on (kill a member, ...) and blocks until the test
// writes a line back on stdin.
func (r *Run) wait(name string) string {
	r.step(name, "waiting", nil)
	line, err := r.in.ReadString('\n')
	if err != nil {
		panic("stdin closed while waiting for " + name)
	}
	return strings.TrimSpace(line)
}

// base takes the current revision as the scenario's zero and returns it.
func (r *Run) base(ctx context.Context) int64 {
	resp, err := r.c.Get(ctx, "base-revision-probe")
	if err != nil {
		panic(err)
	}
	r.n.base = resp.Header.Revision
	return r.n.base
}

func (r *Run) kv(kv *mvccpb.KeyValue) map[string]interface{} {
	if kv == nil {
		return nil
	}
	return map[string]interface{}{
		"key": string(kv.Key), "value": string(kv.Value),
		"create": r.n.rev(kv.CreateRevision), "mod": r.n.rev(kv.ModRevision),
		"version": kv.Version, "lease": r.n.id("lease", kv.Lease)}
}

func (r *Run) kvs(kvs []*mvccpb.KeyValue) []interface{} {
	out := []interface{}{}
	for _, kv := range kvs {
		out = append(out, r.kv(kv))
	}
	return out
}

func (r *Run) get(resp *clientv3.GetResponse) map[string]interface{} {
	if resp == nil {
		return nil
	}
	return map[string]interface{}{"rev": r.n.rev(resp.Header.Revision), "kvs": r.kvs(resp.Kvs),
		"more": resp.More, "count": resp.Count}
}

func (r *Run) ev(ev *clientv3.Event) map[string]interface{} {
	return map[string]interface{}{"type": ev.Type.String(), "kv": r.kv(ev.Kv), "prev": r.kv(ev.PrevKv)}
}

// Options are the command line's.
type Options struct {
	endpoints string
	user      string
	password  string
	work      string
	cacert    string
	cert      string
	key       string
}

type scenario func(r *Run)

var scenarios = map[string]scenario{}

func main() {
	o := &Options{}
	flag.StringVar(&o.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	flag.StringVar(&o.user, "user", "", "user for scenarios that authenticate")
	flag.StringVar(&o.password, "password", "", "its password")
	flag.StringVar(&o.work, "work", os.TempDir(), "a directory for files (snapshots)")
	flag.StringVar(&o.cacert, "cacert", "", "TLS: the CA that signed the servers' certificates")
	flag.StringVar(&o.cert, "cert", "", "TLS: the client certificate")
	flag.StringVar(&o.key, "key", "", "TLS: its key")
	flag.Parse()
	var tlsConf *tls.Config
	if o.cacert != "" {
		var err error
		tlsConf, err = transport.TLSInfo{TrustedCAFile: o.cacert, CertFile: o.cert, KeyFile: o.key}.ClientConfig()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tls: %v\n", err)
			os.Exit(2)
		}
	}
	eps := strings.Split(o.endpoints, ",")
	var portAlt []string
	for _, ep := range eps {
		portAlt = append(portAlt, regexp.QuoteMeta(ep[strings.LastIndex(ep, ":")+1:]))
	}
	sort.Strings(portAlt)
	ports := regexp.MustCompile(`127\.0\.0\.1:(` + strings.Join(portAlt, "|") + `)\b`)
	in := bufio.NewReader(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for _, name := range flag.Args() {
		sc, ok := scenarios[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown scenario %q\n", name)
			os.Exit(2)
		}
		cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, TLS: tlsConf}
		c, err := clientv3.New(cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dial: %v\n", err)
			os.Exit(1)
		}
		r := &Run{name: name, cfg: cfg, c: c, enc: enc, ports: ports, in: in, opts: o,
			n: &Norm{ids: map[string]string{}, cnt: map[string]int{}}}
		sc(r)
		c.Close()
	}
}
