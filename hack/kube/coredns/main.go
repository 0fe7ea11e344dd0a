// Command coredns is the local cluster's DNS server (hack/cluster/coredns.sh builds it):
// CoreDNS with only the plugins a cluster's DNS add-on uses (kubeadm's Corefile), so that
// the build pulls fewer modules than the full server's 63 plugins.
package main

import (
	"github.com/coredns/coredns/coremain"

	// The plugins of hack/cluster/coredns.yaml's Corefile. CoreDNS orders plugins when it is
	// compiled (core/dnsserver's directive list), not by their order here or in the Corefile.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
