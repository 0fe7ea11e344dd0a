package async

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"
)

// clientCache keeps destination clients (NATS connections, Kafka producers, SQS HTTP
// transports) by endpoint, bounded: at most size of them, each closed after idle without a
// delivery or when the least recently used one makes room for a new endpoint. A client in
// use when it is evicted is closed once its last delivery is done, so live clients are at
// most size plus the deliveries running.
type clientCache struct {
	lru *expirable.LRU[string, *cachedClient]
	sf  singleflight.Group
}

type cachedClient struct {
	client any
	close  func()
	// refs counts deliveries using the client; -1 once it is closed.
	refs    atomic.Int64
	evicted atomic.Bool
}

func newClientCache(size int, idle time.Duration) *clientCache {
	return &clientCache{lru: expirable.NewLRU[string, *cachedClient](size, func(_ string, c *cachedClient) {
		c.evicted.Store(true)
		if c.refs.CompareAndSwap(0, -1) {
			c.close()
		}
	}, idle)}
}

func (c *cachedClient) acquire() bool {
	for {
		r := c.refs.Load()
		if r < 0 {
			return false
		}
		if c.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (c *cachedClient) release() {
	if c.refs.Add(-1) == 0 && c.evicted.Load() && c.refs.CompareAndSwap(0, -1) {
		c.close()
	}
}

// get returns the client for key, creating it with create (once, however many callers
// miss at the same time), and a release func to call when the delivery is done.
func (cc *clientCache) get(key string, create func() (any, func(), error)) (any, func(), error) {
	for {
		if c, ok := cc.lru.Get(key); ok && c.acquire() {
			if !c.evicted.Load() {
				cc.lru.Add(key, c) // in use: its idle time starts again
			}
			return c.client, c.release, nil
		}
		v, err, _ := cc.sf.Do(key, func() (any, error) {
			if c, ok := cc.lru.Get(key); ok && !c.evicted.Load() {
				return c, nil
			}
			client, closeFn, err := create()
			if err != nil {
				return nil, err
			}
			c := &cachedClient{client: client, close: closeFn}
			cc.lru.Remove(key) // an expired entry not yet swept is closed, not overwritten
			cc.lru.Add(key, c)
			return c, nil
		})
		if err != nil {
			return nil, nil, err
		}
		if c := v.(*cachedClient); c.acquire() {
			return c.client, c.release, nil
		}
		// Evicted between its creation and now (a burst of other endpoints): try again.
	}
}

// purge closes every client (those in use when their delivery ends).
func (cc *clientCache) purge() { cc.lru.Purge() }
