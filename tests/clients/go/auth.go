package main

import (
	"context"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

func init() { scenarios["auth"] = scAuth }

// scAuth: users, roles and permissions; a password client that outlives its token
// (the servers run with --auth-token-ttl=1); etcd's denial texts. Needs a server
// with auth off at the start; leaves it off.
func scAuth(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	steps := []struct {
		name string
		do   func() error
	}{
		{"user add root", func() error { _, err := c.UserAdd(bg, "root", "rootpw"); return err }},
		{"grant root the root role", func() error { _, err := c.UserGrantRole(bg, "root", "root"); return err }},
		{"user add alice", func() error { _, err := c.UserAdd(bg, "alice", "alicepw"); return err }},
		{"user add alice again", func() error { _, err := c.UserAdd(bg, "alice", "x"); return err }},
		{"role add reader", func() error { _, err := c.RoleAdd(bg, "reader"); return err }},
		{"grant reader read on au/", func() error {
			_, err := c.RoleGrantPermission(bg, "reader", "au/", clientv3.GetPrefixRangeEnd("au/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		}},
		{"grant reader write on au/w", func() error {
			_, err := c.RoleGrantPermission(bg, "reader", "au/w", "", clientv3.PermissionType(clientv3.PermWrite))
			return err
		}},
		{"grant alice reader", func() error { _, err := c.UserGrantRole(bg, "alice", "reader"); return err }},
		{"grant alice a missing role", func() error { _, err := c.UserGrantRole(bg, "alice", "nope"); return err }},
		{"put au/x before enable", func() error { _, err := c.Put(bg, "au/x", "1"); return err }},
		{"auth enable", func() error { _, err := c.AuthEnable(bg); return err }},
		{"get without a user", func() error { _, err := c.Get(bg, "au/x"); return err }},
	}
	for _, s := range steps {
		r.step(s.name, nil, s.do())
	}
	cfg := r.cfg
	cfg.Username, cfg.Password = "alice", "wrong"
	bad, err := clientv3.New(cfg)
	if err == nil {
		_, err = bad.Get(bg, "au/x")
		bad.Close()
	}
	r.step("wrong password", nil, err)
	cfg.Username, cfg.Password = "root", "rootpw"
	root, err := clientv3.New(cfg)
	if err != nil {
		r.step("root client", nil, err)
		return
	}
	defer root.Close()
	ul, err := root.UserList(bg)
	if err == nil {
		sort.Strings(ul.Users)
		r.step("user list", ul.Users, nil)
	} else {
		r.step("user list", nil, err)
	}
	rg, err := root.RoleGet(bg, "reader")
	if err == nil {
		var perms []interface{}
		for _, p := range rg.Perm {
			perms = append(perms, []interface{}{p.PermType.String(), string(p.Key), string(p.RangeEnd)})
		}
		r.step("role get", perms, nil)
	} else {
		r.step("role get", nil, err)
	}
	ug, err := root.UserGet(bg, "alice")
	if err == nil {
		r.step("user get", ug.Roles, nil)
	} else {
		r.step("user get", nil, err)
	}
	_, err = root.UserGet(bg, "nobody")
	r.step("user get missing", nil, err)

	cfg.Username, cfg.Password = "alice", "alicepw"
	alice, err := clientv3.New(cfg)
	if err != nil {
		r.step("alice client", nil, err)
		return
	}
	defer alice.Close()
	resp, err := alice.Get(bg, "au/x")
	r.step("alice reads au/x", r.get(resp), err)
	_, err = alice.Put(bg, "au/x", "2")
	r.step("alice writes au/x", nil, err)
	_, err = alice.Put(bg, "au/w", "2")
	r.step("alice writes au/w", nil, err)
	_, err = alice.Get(bg, "other")
	r.step("alice reads other", nil, err)
	_, err = alice.Get(bg, "au/", clientv3.WithPrefix())
	r.step("alice reads the prefix", nil, err)
	_, err = alice.Delete(bg, "au/w")
	r.step("alice deletes au/w", nil, err)
	_, err = alice.Txn(bg).If(clientv3.Compare(clientv3.Value("other"), "=", "")).Then(clientv3.OpGet("au/x")).Commit()
	r.step("alice compares other", nil, err)
	_, err = alice.UserList(bg)
	r.step("alice lists users", nil, err)
	_, err = alice.Grant(bg, 10)
	r.step("alice grants a lease", nil, err)
	ctx, stop := context.WithCancel(bg)
	r.step("alice watches other", r.collect(alice.Watch(ctx, "other"), 1, 5*time.Second), nil)
	stop()

	// Token expiry: a token taken by hand is refused after the TTL; the client, whose
	// token expired alike, takes a new one and carries on. The raw calls go over a
	// connection of their own, without clientv3's retries, to show the server's answer.
	creds := grpc.WithInsecure()
	if r.cfg.TLS != nil {
		creds = grpc.WithTransportCredentials(credentials.NewTLS(r.cfg.TLS))
	}
	conn, err := grpc.Dial(strings.TrimPrefix(r.cfg.Endpoints[0], "https://"), creds)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ar, err := pb.NewAuthClient(conn).Authenticate(bg, &pb.AuthenticateRequest{Name: "alice", Password: "alicepw"})
	if err != nil {
		r.step("authenticate", nil, err)
		return
	}
	raw := pb.NewKVClient(conn)
	_, err = raw.Range(metadata.AppendToOutgoingContext(bg, "token", ar.Token), &pb.RangeRequest{Key: []byte("au/x")})
	r.step("a fresh token", nil, err)
	time.Sleep(3 * time.Second)
	_, err = raw.Range(metadata.AppendToOutgoingContext(bg, "token", ar.Token), &pb.RangeRequest{Key: []byte("au/x")})
	r.step("an expired token", nil, err)
	resp, err = alice.Get(bg, "au/x")
	r.step("alice reads after her token expired", r.get(resp), err)
	_, err = raw.Range(metadata.AppendToOutgoingContext(bg, "token", "not-a-token"), &pb.RangeRequest{Key: []byte("au/x")})
	r.step("a made-up token", nil, err)

	_, err = root.AuthDisable(bg)
	r.step("auth disable", nil, err)
	resp, err = c.Get(bg, "au/", clientv3.WithPrefix())
	r.step("get without a user after disable", r.get(resp), err)
}
