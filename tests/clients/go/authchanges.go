package main

import (
	"context"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func init() { scenarios["auth-changes"] = scAuthChanges }

// scAuthChanges (after "auth": users root and alice, role reader, auth off): what a
// logged-in client meets when its password, role or user changes under it, and the
// refusals that protect root.
func scAuthChanges(r *Run) {
	bg, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.c
	r.base(bg)
	_, err := c.AuthEnable(bg)
	r.step("auth enable", nil, err)
	cfg := r.cfg
	cfg.Username, cfg.Password = "root", "rootpw"
	root, err := clientv3.New(cfg)
	if err != nil {
		r.step("root client", nil, err)
		return
	}
	defer root.Close()
	cfg.Username, cfg.Password = "alice", "alicepw"
	alice, err := clientv3.New(cfg)
	if err != nil {
		r.step("alice client", nil, err)
		return
	}
	defer alice.Close()
	get := func(name string, cl *clientv3.Client, key string) {
		ctx, stop := context.WithTimeout(bg, 10*time.Second)
		resp, err := cl.Get(ctx, key)
		stop()
		if err == nil {
			r.step(name, len(resp.Kvs), nil)
		} else {
			r.step(name, nil, err)
		}
	}
	get("alice reads", alice, "au/x")
	_, err = root.RoleRevokePermission(bg, "reader", "au/", clientv3.GetPrefixRangeEnd("au/"))
	r.step("revoke reader's read on au/", nil, err)
	get("alice reads after the revoke", alice, "au/x")
	_, err = root.RoleGrantPermission(bg, "reader", "au/", clientv3.GetPrefixRangeEnd("au/"), clientv3.PermissionType(clientv3.PermRead))
	r.step("grant it again", nil, err)
	get("alice reads after the grant", alice, "au/x")
	_, err = root.UserChangePassword(bg, "alice", "newpw")
	r.step("change alice's password", nil, err)
	get("alice's client after the change", alice, "au/x")
	cfg.Password = "newpw"
	alice2, err := clientv3.New(cfg)
	if err == nil {
		get("a client with the new password", alice2, "au/x")
		alice2.Close()
	} else {
		r.step("a client with the new password", nil, err)
	}
	_, err = root.UserRevokeRole(bg, "alice", "reader")
	r.step("revoke alice's role", nil, err)
	_, err = root.UserRevokeRole(bg, "alice", "reader")
	r.step("revoke it again", nil, err)
	_, err = root.RoleDelete(bg, "reader")
	r.step("delete the role", nil, err)
	_, err = root.RoleDelete(bg, "reader")
	r.step("delete it again", nil, err)
	_, err = root.UserDelete(bg, "alice")
	r.step("delete alice", nil, err)
	get("a client of a deleted user", alice, "au/x")
	_, err = root.UserGrantRole(bg, "alice", "root")
	r.step("grant a role to a deleted user", nil, err)
	_, err = root.UserRevokeRole(bg, "root", "root")
	r.step("revoke root's root role", nil, err)
	_, err = root.RoleDelete(bg, "root")
	r.step("delete the root role", nil, err)
	_, err = root.UserDelete(bg, "root")
	r.step("delete root", nil, err)
	_, err = root.RoleAdd(bg, "")
	r.step("add a role without a name", nil, err)
	// (UserAdd with an empty name is left out: its answer, "etcdserver: user name is
	// empty", is also what clientv3 takes for a lost token, so a client with a
	// password re-authenticates and retries it 100 times, ~9 s, on either server.)
	_, err = root.AuthDisable(bg)
	r.step("auth disable", nil, err)
}
