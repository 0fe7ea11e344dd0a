package v1alpha1

import (
	"fmt"
	"strings"
)

// ValidateNATSDestinationSubject applies NATSDestination.subject's schema rules to a
// subject about to be published to: dot-separated non-empty tokens, no wildcards (*, >), no
// whitespace or control characters, and no leading $ or _ (NATS's own APIs: $JS.API, $SYS,
// $KV, _INBOX, ...). A stale object, or one written before the rules existed, is refused here
// as it would have been by the API server.
func ValidateNATSDestinationSubject(s string) error {
	if s == "" {
		return fmt.Errorf("NATS subject is empty")
	}
	if len(s) > 255 {
		return fmt.Errorf("NATS subject is longer than 255 characters")
	}
	if s[0] == '$' || s[0] == '_' {
		return fmt.Errorf("NATS subject %q starts with %q: reserved for NATS itself ($JS.API, $SYS, _INBOX, ...)", s, s[:1])
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("NATS subject %q has an empty token", s)
		}
		for _, r := range tok {
			switch {
			case r == '*' || r == '>':
				return fmt.Errorf("NATS subject %q contains the wildcard %q", s, r)
			case r <= ' ' || r == 0x7f:
				return fmt.Errorf("NATS subject %q contains whitespace or a control character", s)
			}
		}
	}
	return nil
}
