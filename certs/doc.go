// Package certs makes the certificates a raftplane cluster's peers use for
// mutual TLS, and serves TLS configurations that follow certificate files on
// disk, so certificates rotate without a restart.
//
// The trust model is the one etcd (--peer-client-cert-auth), Consul
// (verify_incoming/verify_outgoing) and rqlite use on their peer ports: one
// cluster CA, and any certificate it signed is a member. A peer dials the IP
// it learnt from gossip, so there is no host name to check; the CA is the
// whole check, and it must sign nothing but cluster members.
//
// The package imports no other raftplane package.
package certs
