"""``kvcore gateway start``: etcd's L4 gateway (etcdmain/gateway.go, proxy/tcpproxy),
a TCP proxy that hands each client connection to one of the cluster's client endpoints."""
