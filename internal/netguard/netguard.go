// Package netguard decides which network addresses a tenant-supplied endpoint may reach.
//
// klambda dials addresses that tenants write: code URLs, S3 endpoints, destination brokers.
// Checked by name they are worthless (a DNS answer or a redirect changes the address), so
// the check runs where the address is final: in the dialer's Control hook, on the IP the
// socket is about to connect to. Every redirect and every re-resolution dials again, and
// is checked again.
//
// Always refused, whatever the configuration says: loopback, link-local (cloud metadata
// endpoints live there), unspecified, multicast and broadcast addresses. The cluster's own
// ranges (pod and service CIDRs, the node network) are refused when the operator lists them
// in Deny; Allow lists ranges that are let through even when Deny covers them (an in-cluster
// S3 service, say). Allow never reopens the always-refused ranges unless AllowLoopback is
// set, which exists for tests and single-node development only.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrDenied is wrapped by every refusal. Its message never echoes what a server said.
var ErrDenied = errors.New("address not allowed by klambda's egress policy")

// Policy is an egress policy for tenant-supplied endpoints. The zero value refuses only the
// always-refused ranges.
type Policy struct {
	// Deny lists ranges refused in addition to the always-refused ones (typically the
	// cluster's pod, service and node CIDRs).
	Deny []netip.Prefix
	// Allow lists ranges let through although Deny covers them.
	Allow []netip.Prefix
	// AllowLoopback lets loopback addresses through (tests and local development only).
	AllowLoopback bool
}

// ParsePrefixes parses a comma-separated list of CIDRs or single addresses; empty items are
// skipped.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("netguard: %q is not a CIDR: %w", item, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("netguard: %q is not an address or CIDR: %w", item, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Check says whether addr may be dialed.
func (p *Policy) Check(addr netip.Addr) error {
	if p == nil {
		return nil
	}
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return fmt.Errorf("%w: invalid address", ErrDenied)
	case addr.IsLoopback():
		if p.AllowLoopback {
			return nil
		}
		return fmt.Errorf("%w: loopback address %s", ErrDenied, addr)
	case addr.IsUnspecified(), addr.IsMulticast(), addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast(),
		addr.IsInterfaceLocalMulticast(), addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is link-local, multicast or unspecified", ErrDenied, addr)
	}
	for _, a := range p.Allow {
		if a.Contains(addr) {
			return nil
		}
	}
	for _, d := range p.Deny {
		if d.Contains(addr) {
			return fmt.Errorf("%w: %s is in a refused range", ErrDenied, addr)
		}
	}
	return nil
}

// Control is a net.Dialer Control hook that refuses addresses the policy denies. It sees the
// address after DNS resolution, for every connection attempt.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ErrDenied, address)
	}
	return p.Check(ap.Addr())
}

// Dialer returns a net.Dialer that applies the policy to every connection it makes.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if p != nil {
		d.Control = p.Control
	}
	return d
}

// DialContext dials through a Dialer with the policy; it fits http.Transport.DialContext,
// kgo.Dialer and nats.SetCustomDialer's shape.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return p.Dialer(10*time.Second).DialContext(ctx, network, address)
}

// Denied reports whether err (or anything it wraps) is a policy refusal.
func Denied(err error) bool { return errors.Is(err, ErrDenied) }
