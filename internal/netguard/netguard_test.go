package netguard

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestCheck(t *testing.T) {
	deny, err := ParsePrefixes("10.0.0.0/8, 192.168.1.7")
	if err != nil {
		t.Fatal(err)
	}
	allow, _ := ParsePrefixes("10.96.0.10")
	p := &Policy{Deny: deny, Allow: allow}
	for addr, ok := range map[string]bool{
		"127.0.0.1":        false,
		"::1":              false,
		"::ffff:127.0.0.1": false,
		"169.254.169.254":  false,
		"fe80::1":          false,
		"0.0.0.0":          false,
		"224.0.0.1":        false,
		"10.1.2.3":         false,
		"10.96.0.10":       true,
		"192.168.1.7":      false,
		"192.168.1.8":      true,
		"93.184.216.34":    true,
	} {
		err := p.Check(netip.MustParseAddr(addr))
		if (err == nil) != ok {
			t.Errorf("%s: err=%v, want allowed=%v", addr, err, ok)
		}
		if err != nil && !Denied(err) {
			t.Errorf("%s: %v does not wrap ErrDenied", addr, err)
		}
	}
	if err := (&Policy{AllowLoopback: true}).Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("AllowLoopback: %v", err)
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// A redirect to a refused address is refused when it is dialed, whatever name it used.
func TestHTTPRedirectToLoopbackIsRefused(t *testing.T) {
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("secret")) }))
	defer inner.Close()
	p := &Policy{}
	c := &http.Client{Transport: &http.Transport{DialContext: p.DialContext}}
	_, err := c.Get(inner.URL)
	if !Denied(err) {
		t.Fatalf("GET loopback: %v, want a policy refusal", err)
	}
	// "localhost" resolves to loopback: still refused at dial time.
	_, port, _ := net.SplitHostPort(inner.Listener.Addr().String())
	_, err = c.Get("http://localhost:" + port)
	if !Denied(err) {
		t.Fatalf("GET localhost: %v, want a policy refusal", err)
	}
	if _, err := (&Policy{AllowLoopback: true}).DialContext(context.Background(), "tcp", inner.Listener.Addr().String()); err != nil {
		t.Fatalf("AllowLoopback dial: %v", err)
	}
}
